"""TEST SERVER, not for production: a minimal OpenAI-compatible chat endpoint over the transformers judge.

It exists so the ``openai`` judge backend is tested against a real HTTP server on loopback serving
the same SmolLM2 model, where llama-cpp-python (whose ``llama_cpp.server`` would do this) cannot be
compiled in reasonable time. It implements only what the judge uses: ``GET /v1/models`` and
non-streaming ``POST /v1/chat/completions``. Use Ollama, vLLM, llama.cpp server or LM Studio for
real work.

    python tests/judge_test_server.py --model PATH --port 8765
"""

from __future__ import annotations

import argparse
import time
import uuid

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from grader.judge.hf_local import TransformersJudge


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields (stream, top_p...) this server ignores
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=256, ge=1, le=4096)


def create_app(model_path: str, served_name: str = "smollm2") -> FastAPI:
    app = FastAPI(title="grader judge TEST server")
    TransformersJudge(model=model_path)  # load before the first request, so readiness means ready

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": served_name, "object": "model", "owned_by": "test-server"}]}

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest) -> dict:
        if request.model != served_name:
            raise HTTPException(404, f"model {request.model!r} not found; this test server serves {served_name!r}")
        judge = TransformersJudge(model=model_path, max_tokens=request.max_tokens, temperature=request.temperature,
                                  timeout=600, prefill=True)
        reply = judge.complete([m.model_dump() for m in request.messages])
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": served_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "finish_reason": reply.finish_reason}],
        }

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder or .gguf file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="smollm2", help="model name the server answers to")
    args = parser.parse_args()
    uvicorn.run(create_app(args.model, args.name), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
