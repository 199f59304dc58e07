"""Reliability fixtures: seeds, trial counts, and the long-trial switch.

``make test`` runs a few short trials of every scenario; ``make reliability``
sets ``I2ES_HUB_RELIABILITY=long`` and runs the full ones (20 trials, 10,000
documents); ``I2ES_HUB_<SCENARIO>_TRIALS`` and friends (see each test module)
override either. ``I2ES_HUB_CRASH_SEED`` replays a run: every trial prints its seed.
"""

from __future__ import annotations

import os
import random

import pytest


@pytest.fixture
def seed() -> int:
    """The base seed of this test's trials (printed, and replayable)."""
    value = os.environ.get("I2ES_HUB_CRASH_SEED")
    chosen = int(value) if value else random.SystemRandom().randrange(2**32)
    print(f"seed {chosen} (replay with I2ES_HUB_CRASH_SEED={chosen})")
    return chosen
