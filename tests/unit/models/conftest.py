"""Shared tiny-model fixtures; every test gets its own empty BRIDLE_CACHE so nothing leaks into ~/.cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridle.models import save_tiny_model


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "bridle-cache"
    monkeypatch.setenv("BRIDLE_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)
