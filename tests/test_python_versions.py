"""igris installs on CPython 3.11 to 3.13: pyproject.toml admits them and uv.lock holds, for every
package installed on Linux x86-64, a wheel for each (no compiler needed, as in CI and the image).
CI runs the suite on 3.11; README "Python versions" says how to run it on 3.13."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ((3, 11), (3, 12), (3, 13))
# manylinux wheels that run on a current x86-64 Linux (glibc 2.17 and later covers them all).
PLATFORMS = [
    *(f"manylinux_2_{minor}_x86_64" for minor in range(40, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]


def _toml(name: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / name).read_text())


def _environment(version: tuple[int, int]) -> dict[str, str]:
    text = f"{version[0]}.{version[1]}"
    return {
        "python_version": text,
        "python_full_version": f"{text}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "extra": "",
    }


def _installed(lock: dict[str, Any], version: tuple[int, int]) -> list[dict[str, Any]]:
    """The locked packages that `uv sync` (dev group included) installs on this platform."""
    packages = {p["name"]: p for p in lock["package"]}
    env = _environment(version)
    root = next(p for p in lock["package"] if p["source"].get("virtual") == ".")
    seen: dict[str, dict[str, Any]] = {}
    edges = [*root.get("dependencies", []), *root.get("dev-dependencies", {}).get("dev", [])]
    while edges:
        edge = edges.pop()
        if "marker" in edge and not Marker(edge["marker"]).evaluate(env):
            continue
        package = packages[edge["name"]]
        extras = edge.get("extra", [])
        key = f"{edge['name']}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen[key] = package
        edges.extend(package.get("dependencies", []))
        for extra in extras:
            edges.extend(package.get("optional-dependencies", {}).get(extra, []))
    return list({p["name"]: p for p in seen.values()}.values())


def _has_wheel(package: dict[str, Any], version: tuple[int, int]) -> bool:
    supported: set[Tag] = {
        *cpython_tags(version, platforms=PLATFORMS),
        *compatible_tags(version, f"cp{version[0]}{version[1]}", platforms=PLATFORMS),
    }
    for wheel in package.get("wheels", []):
        _, _, _, tags = parse_wheel_filename(wheel["url"].rsplit("/", 1)[1])
        if tags & supported:
            return True
    return False


@pytest.mark.parametrize("version", SUPPORTED, ids=lambda v: f"{v[0]}.{v[1]}")
def test_pyproject_and_the_lock_admit_the_python_version(version):
    text = f"{version[0]}.{version[1]}.0"
    assert text in SpecifierSet(_toml("pyproject.toml")["project"]["requires-python"])
    assert text in SpecifierSet(_toml("uv.lock")["requires-python"])


@pytest.mark.parametrize("version", SUPPORTED, ids=lambda v: f"{v[0]}.{v[1]}")
def test_every_locked_package_has_a_linux_wheel_for_the_python_version(version):
    installed = _installed(_toml("uv.lock"), version)
    assert len(installed) > 50  # the walk found the dependency tree, not just the roots
    missing = sorted(
        f"{p['name']}=={p['version']}" for p in installed if not _has_wheel(p, version)
    )
    assert missing == []
