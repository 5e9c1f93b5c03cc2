"""The FastAPI application around one ``Deployment``: pydantic request models (a malformed
request gets 422 naming the field), a request-size limit (413), batch and length limits (422),
an optional bearer token (401), and errors users cause as 400 / 409 with one readable line,
never a 500 with a traceback. The OpenAPI schema is at ``/openapi.json`` (``/docs`` shows it)."""

from __future__ import annotations

import hmac
import json
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from metagui.core.chat import NotAdapted
from metagui.core.errors import MetaGUIError, StoreError
from metagui.serve.deployment import Deployment

MAX_BODY_BYTES = 2 * 1024 * 1024  # a request larger than this gets 413
MAX_BATCH = 256  # messages per /predict
MAX_ITEM_CHARS = 200_000  # one message or example (an image's PNG data URI fits)
MAX_INTENTS = 1000
MAX_EXAMPLES = 1000  # per intent in one /adapt
MAX_NAME_CHARS = 200
MAX_REPLY_CHARS = 4000

Item = Annotated[str, Field(min_length=1, max_length=MAX_ITEM_CHARS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntentIn(_Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS, description="the intent's name")
    examples: list[Item] = Field(default_factory=list, max_length=MAX_EXAMPLES,
                                 description="example messages (texts; PNG data URIs for an image model)")
    reply: str = Field("", max_length=MAX_REPLY_CHARS, description="what the assistant answers for this intent")


class AdaptIn(_Strict):
    intents: list[IntentIn] = Field(min_length=1, max_length=MAX_INTENTS)
    replace: bool = Field(True, description="replace the support set (true) or merge into it (false)")
    threshold: float | None = Field(None, ge=0.0, le=1.0,
                                    description="answers below this confidence get the fallback question")


class PredictIn(_Strict):
    messages: list[Item] = Field(min_length=1, max_length=MAX_BATCH)


class FeedbackIn(_Strict):
    message: Item
    intent: str = Field(min_length=1, max_length=MAX_NAME_CHARS, description="the message's right intent")
    reply: str = Field("", max_length=MAX_REPLY_CHARS, description="the intent's reply, for a new intent")


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes gets 413, whether it says its
    length (Content-Length) or streams it (chunked)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._too_large(send)
            return
        chunks, seen = [], 0  # read (at most limit bytes of) the body first, then hand it on
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, handed = b"".join(chunks), False

        async def replay():
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        body = json.dumps({"detail": f"the request is larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def create_app(deployment: Deployment, token: str = "", max_body: int = MAX_BODY_BYTES) -> FastAPI:
    """The API of ``deployment``; with ``token``, every endpoint but /health asks for
    ``Authorization: Bearer <token>``."""
    app = FastAPI(title="MetaGUI serve", version="1",
                  description=f"Run {deployment.run_id}: {deployment.run.get('name') or ''}. Few-shot intent model: "
                  "adapt to a support set, predict, learn from feedback. Every feedback item and support-set change "
                  "is committed to the run store before the answer returns.")
    bearer = HTTPBearer(auto_error=False)

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if not token:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise _Unauthorised

    auth = [Depends(authorised)]

    @app.exception_handler(_Unauthorised)
    async def _unauthorised(request: Request, exc: _Unauthorised) -> JSONResponse:
        return JSONResponse({"detail": "a bearer token is required (Authorization: Bearer <token>)"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(NotAdapted)
    async def _not_adapted(request: Request, exc: NotAdapted) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"not recorded: {exc}"}, status_code=503)

    @app.exception_handler(MetaGUIError)
    async def _user_error(request: Request, exc: MetaGUIError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/health", summary="Is the server up, and adapted?")
    def health() -> dict:
        return deployment.health()

    @app.get("/model", dependencies=auth, summary="The run, the encoder, the algorithm and the model card")
    def model() -> dict:
        return deployment.model()

    @app.get("/support", dependencies=auth, summary="The support set the model is adapted to")
    def support() -> dict:
        return deployment.support()

    @app.post("/adapt", dependencies=auth, summary="Set the support set (intents, examples, replies) and adapt")
    def adapt(body: AdaptIn) -> dict:
        return deployment.set_support([i.model_dump() for i in body.intents], body.replace, body.threshold)

    @app.post("/predict", dependencies=auth, summary="Intent, confidence, top 3 and reply of each message")
    def predict(body: PredictIn) -> dict:
        return deployment.predict(body.messages)

    @app.post("/feedback", dependencies=auth, summary="A message's right intent: recorded, then the model re-adapts")
    def feedback(body: FeedbackIn) -> dict:
        return deployment.feedback(body.message, body.intent, body.reply)

    app.add_middleware(BodyLimit, limit=max_body)
    return app


class _Unauthorised(Exception):
    pass
