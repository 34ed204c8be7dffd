"""Any OpenAI-compatible ``/chat/completions`` endpoint: Ollama, vLLM, llama.cpp server, LM Studio."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from grader.errors import BackendUnavailable
from grader.judge.base import Judge, JudgeOptions
from grader.judge.verdict import JudgeFailure, Reply


class OpenAIOptions(JudgeOptions):
    url: str = Field(default="http://127.0.0.1:11434/v1", description="Base URL, up to and including /v1.")
    api_key: SecretStr | None = Field(default=None, description="Sent as a Bearer token when set.")


class OpenAICompatJudge(Judge):
    """Talks to ``{url}/chat/completions`` with httpx.

    Example:
        >>> judge = OpenAICompatJudge(url="http://127.0.0.1:8080/v1", model="smollm2")
        >>> judge.endpoint
        'http://127.0.0.1:8080/v1/chat/completions'
    """

    name: ClassVar[str] = "openai"
    Options: ClassVar[type[JudgeOptions]] = OpenAIOptions
    options: OpenAIOptions

    def __init__(self, **options: object):
        super().__init__(**options)
        try:
            import httpx
        except ImportError:
            raise BackendUnavailable("the openai judge needs httpx: pip install 'interview-grader[judge]'") from None
        self._httpx = httpx
        self.endpoint = self.options.url.rstrip("/") + "/chat/completions"

    @property
    def model_id(self) -> str | None:
        return self.options.model or "default"

    def complete(self, messages: list[dict[str, str]]) -> Reply:
        httpx = self._httpx
        headers = {}
        if self.options.api_key is not None:
            headers["Authorization"] = f"Bearer {self.options.api_key.get_secret_value()}"
        body = {
            "model": self.model_id,
            "messages": messages,
            "temperature": self.options.temperature,
            "max_tokens": self.options.max_tokens,
            "stream": False,
        }
        try:
            response = httpx.post(self.endpoint, json=body, headers=headers, timeout=self.options.timeout)
        except httpx.TimeoutException:
            raise JudgeFailure("timeout", f"no reply from {self.endpoint} within {self.options.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise JudgeFailure("unreachable", f"{self.endpoint}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise JudgeFailure("http_error", f"{self.endpoint} answered {response.status_code}: {response.text[:200]}")
        try:
            choice = response.json()["choices"][0]
            message = choice["message"]
            return Reply(text=message.get("content") or "", finish_reason=choice.get("finish_reason"),
                         refusal=message.get("refusal"))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise JudgeFailure("malformed", f"not a chat completion: {response.text[:200]}") from None
