"""Shared fixtures: the real embedding model and grader, loaded once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from grader.bank import load_bank
from grader.config import REPO_ROOT
from grader.embedding import get_embedder
from grader.grader import Grader


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """Tests never see the developer's GRADER_* settings."""
    for name in list(os.environ):
        if name.startswith("GRADER_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the session: the converted model is built once, then reused by every test.

    PYTEST_GRADER_CACHE names a cache to reuse across runs (a developer's edit-test loop); CI leaves it
    unset, so every run there starts cold, as on a fresh clone.
    """
    reused = os.environ.get("PYTEST_GRADER_CACHE")
    return Path(reused) if reused else tmp_path_factory.mktemp("grader-cache")


@pytest.fixture(scope="session")
def embedder(cache_dir):
    return get_embedder("multilingual-e5-small", cache_dir)


@pytest.fixture(scope="session")
def bank():
    return load_bank(REPO_ROOT / "rubrics")


@pytest.fixture(scope="session")
def grader(embedder, bank, cache_dir) -> Grader:
    return Grader(embedder, bank, cache_dir / "embeddings")


@pytest.fixture
def cli_env(cache_dir) -> dict[str, str]:
    """Environment for running the installed `grader` command against the session cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env["GRADER_CACHE_DIR"] = str(cache_dir)
    return env


def grader_command() -> list[str]:
    """The installed `grader` script of the interpreter running the tests."""
    script = Path(sys.executable).with_name("grader")
    return [str(script)] if script.exists() else [sys.executable, "-m", "grader.cli"]
