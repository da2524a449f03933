"""governance/gctune.py: the collector settings of long-running processes."""

from __future__ import annotations

import gc

import pytest

from governance.gctune import tune_gc


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_startup_objects_are_frozen_and_young_collections_are_rarer(settings, restore_gc):
    settings.IGRIS_GC_YOUNG_THRESHOLD = 40_000
    gc.unfreeze()
    tune_gc()
    assert gc.get_threshold()[0] == 40_000
    assert gc.get_freeze_count() > 1000  # Django and the apps, imported by now


def test_zero_keeps_cpythons_defaults(settings, restore_gc):
    settings.IGRIS_GC_YOUNG_THRESHOLD = 0
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
