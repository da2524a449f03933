"""Bitmask indexes over a rule list: bit i stands for rule i.

Each index answers "which rules could match this value?" with a superset of the true answer
(rules with no constraint on the value, plus the rules whose constraint the value may satisfy).
ANDing the answers of several indexes keeps every rule that could match, in rule order, so the
engine's first-match semantics do not depend on the index; the engine checks each candidate in
full.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

# An infix glob ("*admin*") is filed under one substring of this length of its literals (the
# least used one so far, to spread the rules); a name probes each of its substrings of that
# length, one probe per position.
_GRAM = 4
# Names longer than this skip the probes and take every infix rule as a candidate instead:
# still correct, only slower.
_MAX_INFIX_SCAN = 256
_WILDCARDS = re.compile(r"[*?]+")


class ValueIndex:
    """Rules by exact value, plus the rules with no constraint on the value (`free`)."""

    __slots__ = ("by_value", "free")

    def __init__(self) -> None:
        self.by_value: dict[str, int] = {}
        self.free = 0

    def add(self, bit: int, values: Iterable[str] | None) -> None:
        if values is None:
            self.free |= bit
            return
        for value in values:
            self.by_value[value] = self.by_value.get(value, 0) | bit

    def mask(self, value: str | None) -> int:
        hit = self.by_value.get(value) if value is not None else None
        return self.free | hit if hit else self.free

    def mask_any(self, values: Iterable[str]) -> int:
        mask = self.free
        for value in values:
            hit = self.by_value.get(value)
            if hit:
                mask |= hit
        return mask


class GlobIndex:
    """Rules by glob: exact names, literal prefix ("read_*"), literal suffix ("*_file"), or
    else the longest literal run inside ("*admin*", looked up in every substring)."""

    __slots__ = ("any", "base", "exact", "free", "infix", "infix_all", "prefix", "suffix")

    def __init__(self) -> None:
        self.exact: dict[str, int] = {}
        self.prefix = _Affixes()
        self.suffix = _Affixes()
        self.infix = _Affixes()
        self.infix_all = 0
        self.any = 0  # globs with no literal at all: "*", "?*", "??"
        self.free = 0
        self.base = 0  # free | any: candidates for every name

    def add(self, bit: int, globs: Iterable[str] | None) -> None:
        if globs is None:
            self.free |= bit
            self.base |= bit
            return
        for glob in globs:
            parts = _WILDCARDS.split(glob)
            if len(parts) == 1:
                self.exact[glob] = self.exact.get(glob, 0) | bit
            elif parts[0]:
                self.prefix.add(parts[0], bit)
            elif parts[-1]:
                self.suffix.add(parts[-1], bit)
            elif any(parts):
                grams = {
                    part[i : i + _GRAM]
                    for part in parts
                    if part
                    for i in range(max(1, len(part) - _GRAM + 1))
                }
                gram = min(grams, key=lambda g: (self.infix.load.get(g, 0), g))
                self.infix.add(gram, bit)
                self.infix_all |= bit
            else:
                self.any |= bit
        self.base = self.free | self.any

    def mask(self, name: str | None) -> int:
        if name is None:
            return self.free
        # Big-int ORs cost a copy of the mask each, so only the hits are ORed in.
        mask = self.base
        hit = self.exact.get(name)
        if hit:
            mask |= hit
        size = len(name)
        prefix, suffix = self.prefix, self.suffix
        for length in prefix.lengths:
            if length > size:
                break
            hit = prefix.get(name[:length])
            if hit:
                mask |= hit
        for length in suffix.lengths:
            if length > size:
                break
            hit = suffix.get(name[size - length :])
            if hit:
                mask |= hit
        if self.infix_all:
            if size > _MAX_INFIX_SCAN:
                return mask | self.infix_all
            infix = self.infix
            for length in infix.lengths:
                for start in range(size - length + 1):
                    hit = infix.get(name[start : start + length])
                    if hit:
                        mask |= hit
        return mask


class _Affixes(dict[str, int]):
    """Literal -> rule bits, with the distinct literal lengths in increasing order."""

    def __init__(self) -> None:
        super().__init__()
        self.lengths: tuple[int, ...] = ()
        self.load: dict[str, int] = {}  # literal -> number of rules filed under it

    def add(self, literal: str, bit: int) -> None:
        self[literal] = self.get(literal, 0) | bit
        self.load[literal] = self.load.get(literal, 0) + 1
        if len(literal) not in self.lengths:
            self.lengths = tuple(sorted({*self.lengths, len(literal)}))


def bits(mask: int) -> Iterator[int]:
    """The set bits of `mask`, lowest first, lazily, in linear time overall.

    The first candidate usually decides, so the first few bits are peeled off one at a time
    (a few big-int operations each); past those, one binary rendering is scanned at C speed.
    """
    for _ in range(8):
        if not mask:
            return
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low
    if not mask:
        return
    digits = bin(mask)
    top = len(digits) - 1
    position = len(digits)
    while (position := digits.rfind("1", 2, position)) >= 0:
        yield top - position
