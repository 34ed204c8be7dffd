"""Settings, read from the environment (``GRADER_*``) by the surfaces: CLI, API, batch."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "grader"


def _default_sessions_dir() -> Path:
    import os

    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "grader" / "sessions"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRADER_", extra="ignore")

    embed_model: str = Field(
        default="multilingual-e5-small",
        description="Any sentence-transformers model name or local path; the default ships offline.",
    )
    device: str = "cpu"
    bank_dir: Path = REPO_ROOT / "rubrics"
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    max_answer_chars: int = Field(default=6000, ge=200)
    batch_size: int = Field(
        default=64, ge=1, le=4096,
        description="Rows `grader batch` grades with one encoder call and commits to the output at once.",
    )
    sessions_dir: Path = Field(
        default_factory=_default_sessions_dir,
        description="Where `grader interview` saves its transcripts (JSON and Markdown), one pair per session.",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
