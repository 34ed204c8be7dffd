"""Request body limits, enforced before a body is parsed (413 in the common error shape).

Content-Length is checked up front; a chunked body is counted as it streams, so a client cannot get
round the limit by leaving the header out.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ErrorBody, ErrorResponse


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, default: int, uploads: int, upload_paths: tuple[str, ...] = ("/v1/jobs",)):
        self.app, self.default, self.uploads, self.upload_paths = app, default, uploads, upload_paths

    def _limit(self, scope: Scope) -> int:
        return self.uploads if scope["path"] in self.upload_paths else self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(send, limit)
            return
        seen, rejected = 0, False

        async def counted() -> Message:
            # Past the limit, answer 413 ourselves and tell the app the client left: whatever it
            # sends after that is dropped.
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit and not rejected:
                    rejected = True
                    await self._reject(send, limit)
            return {"type": "http.disconnect"} if rejected else message

        async def sending(message: Message) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, counted, sending)

    @staticmethod
    async def _reject(send: Send, limit: int) -> None:
        body = ErrorResponse(error=ErrorBody(code="payload_too_large", message=f"the request body exceeds {limit} "
                                             "bytes", details={"limit_bytes": limit}))
        data = json.dumps(body.model_dump()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})
