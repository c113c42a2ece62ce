"""Google's generateContent API on the gateway (Gemini CLI): its endpoints, their answers and refusals
in Google's shape. The model comes from the URL; the request is then handled like any other
(resolved, admitted, translated by gateway/translate/gemini_chat)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from broke.catalog import Catalog
from broke.gateway.translate.gemini_chat import STREAM_FORM, error
from broke.routing.transport import GEMINI_COUNT, GEMINI_GENERATE, GEMINI_STREAM

#: Handles one model request: (request, client API path, fields set in its body) -> the answer.
Handle = Callable[[Request, str, dict[str, Any]], Awaitable[Response]]
#: The slots a request's token may use, or its refusal.
Allowed = Callable[[Request], Awaitable["list[str] | Response"]]
METHODS = {"generateContent": GEMINI_GENERATE, "streamGenerateContent": GEMINI_STREAM, "countTokens": GEMINI_COUNT}
GENERATION_METHODS = list(METHODS)
#: What a slot is announced with (broke does not know a backend's real limits).
INPUT_LIMIT, OUTPUT_LIMIT = 1_048_576, 65_536


def google_shaped(response: Response) -> Response:
    """A refusal or error in Google's shape (`{"error": {"code", "message", "status"}}`); others as they are."""
    if response.status_code < 400 or isinstance(response, StreamingResponse):
        return response
    try:
        parsed = orjson.loads(bytes(response.body))
    except orjson.JSONDecodeError:
        parsed = None
    inner = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(inner, dict) and isinstance(inner.get("code"), int) and isinstance(inner.get("status"), str):
        return response
    headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
    return Response(error(response.status_code, bytes(response.body)), status_code=response.status_code,
                    headers=headers, media_type="application/json")


def _model_entry(slot: str) -> dict[str, Any]:
    return {"name": f"models/{slot}", "version": "broke", "displayName": slot,
            "description": f"broke slot '{slot}'", "inputTokenLimit": INPUT_LIMIT, "outputTokenLimit": OUTPUT_LIMIT,
            "supportedGenerationMethods": GENERATION_METHODS}


class GeminiAPI:
    """The /v1beta endpoints; `handle` and `allowed` are the front proxy's."""

    def __init__(self, catalog: Catalog, handle: Handle, allowed: Allowed) -> None:
        self.catalog, self.handle, self.allowed = catalog, handle, allowed

    def routes(self) -> list[Route]:
        return [Route("/v1beta/models", self.models, methods=["GET"]),
                Route("/v1beta/models/{target:path}", self.model, methods=["GET"]),
                Route("/v1beta/models/{target:path}", self.call, methods=["POST"])]

    async def call(self, request: Request) -> Response:
        """POST models/MODEL:METHOD."""
        model, _, method = request.path_params["target"].rpartition(":")
        path = METHODS.get(method)
        if path is None or not model:
            return google_shaped(JSONResponse({"error": {"message": f"no method '{method or '?'}' here; "
                                                         f"broke serves {', '.join(METHODS)}"}}, status_code=404))
        fields: dict[str, Any] = {"model": model.removeprefix("models/")}
        if path == GEMINI_STREAM:
            fields.update({"stream": True, STREAM_FORM: "sse" if request.query_params.get("alt") == "sse" else "json"})
        response = google_shaped(await self.handle(request, path, fields))
        if isinstance(response, StreamingResponse) and fields.get(STREAM_FORM) == "json" \
                and response.status_code < 400:
            response.headers["content-type"] = "application/json"
        return response

    async def models(self, request: Request) -> Response:
        """GET models: every slot this token may use."""
        slots = await self.allowed(request)
        if isinstance(slots, Response):
            return google_shaped(slots)
        return JSONResponse({"models": [_model_entry(slot) for slot in slots]})

    async def model(self, request: Request) -> Response:
        """GET models/MODEL: the slot a model name maps to."""
        slots = await self.allowed(request)
        if isinstance(slots, Response):
            return google_shaped(slots)
        name = request.path_params["target"].removeprefix("models/")
        slot = self.catalog.slot_for_model(name)
        if slot is None or slot not in slots:
            return google_shaped(JSONResponse({"error": {"message": f"model '{name}' maps to no slot this token "
                                                         "may use"}}, status_code=404))
        return JSONResponse(_model_entry(slot))
