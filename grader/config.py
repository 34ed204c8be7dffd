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


@lru_cache
def get_settings() -> Settings:
    return Settings()
