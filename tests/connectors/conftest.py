"""Fixtures: the three sample national systems behind their real transports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from i2es_hub.simulators.national import NationalSystem, national_system


@pytest.fixture
def kenya(tmp_path: Path) -> Iterator[NationalSystem]:
    with national_system("ke-ppb", tmp_path / "ke") as system:
        yield system


@pytest.fixture
def germany(tmp_path: Path) -> Iterator[NationalSystem]:
    with national_system("de-bfarm", tmp_path / "de") as system:
        yield system


@pytest.fixture
def switzerland(tmp_path: Path) -> Iterator[NationalSystem]:
    with national_system("ch-swissmedic", tmp_path / "ch") as system:
        yield system
