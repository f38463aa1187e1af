"""Shared fixtures: the path of ../shared/data, and an isolated model cache for every test session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (the project's ../shared/data folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + byte-level tokenizer saved as a HF directory, for CLI and engine tests."""
    from bridle.models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session", autouse=True)
def isolated_judge_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Endpoint judges' answers are cached on disk; tests keep theirs out of ~/.cache."""
    import os

    os.environ["BRIDLE_JUDGE_CACHE"] = str(tmp_path_factory.mktemp("judge-cache"))
