"""The serving process tunes the garbage collector once started (crmkit.app)."""

from __future__ import annotations

import gc

import pytest

from crmkit.app import create_app
from crmkit.testing import Env


async def test_once_started_the_server_freezes_start_up_and_collects_less_often(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What start-up built leaves the collector's scans and gen0 is collected every
    ``gc_gen0_threshold`` allocations (a GraphQL page crossed Python's 700 dozens of times)."""
    monkeypatch.setattr(env.platform.settings, "gc_gen0_threshold", 12_345)
    before = gc.get_threshold()
    app = create_app(env.platform)
    gc.unfreeze()
    try:
        async with app.lifespan():
            assert gc.get_threshold() == (12_345, *before[1:])
            assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*before)
