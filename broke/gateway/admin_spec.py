"""The OpenAPI 3.1 document of `/admin/v1`, and the request bodies it describes (the admin API checks
bodies against these same schemas, so the document cannot drift from what is accepted)."""
from __future__ import annotations

from typing import Any

from broke import __version__
from broke.changes.health import KEY_STATUSES, MODEL_STATUSES
from broke.state.model import KEY_POLICY_MODES, MODEL_POLICY_MODES

_STRINGS = {"type": "array", "items": {"type": "string"}}
_SECONDS = {"type": "number", "exclusiveMinimum": 0, "description": "how long the status lasts (default: until "
            "changed; cooldown: 60 s)"}

BODIES: dict[str, dict[str, Any]] = {
    "Frozen": {"type": "object", "required": ["frozen"], "properties": {"frozen": {"type": "boolean"}}},
    "Route": {"type": "object", "description": "at least one of backend and fallbacks",
              "properties": {"backend": {"type": "string", "description": "a backend id, e.g. openai/gpt-5.4"},
                             "fallbacks": {**_STRINGS, "description": "backend ids or slot names, in order"}}},
    "KeyPolicy": {"type": "object", "properties": {
        "mode": {"type": "string", "enum": list(KEY_POLICY_MODES)},
        "cooldown_s": {"type": "integer", "minimum": 0}, "retries": {"type": "integer", "minimum": 0},
        "order": {**_STRINGS, "description": "key variables, in order"}}},
    "ModelPolicy": {"type": "object", "properties": {
        "mode": {"type": "string", "enum": list(MODEL_POLICY_MODES)},
        "order": {**_STRINGS, "description": "backends to try first, in order"},
        "cooldown_last": {"type": "boolean"},
        "retries": {"type": "integer", "minimum": 0, "description": "more backends to try after the first"},
        "cooldown_s": {"type": "integer", "minimum": 0, "description": "longest sit-out of a failed backend"}}},
    "KeyState": {"type": "object", "required": ["status"], "properties": {
        "status": {"type": "string", "enum": list(KEY_STATUSES)}, "seconds": _SECONDS}},
    "ModelState": {"type": "object", "required": ["status"], "properties": {
        "status": {"type": "string", "enum": list(MODEL_STATUSES)}, "seconds": _SECONDS}},
}

_ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"}, "type": {"type": "string"}}}}}
_CHANGED = {"type": "object", "properties": {"generation": {"type": "integer"}}}
_HEALTH_BODIES = ("KeyState", "ModelState")
_ERRORS = {
    "400": "bad input (the message says what and what to do)", "401": "missing or wrong admin token",
    "403": "a client or profile token, or not a loopback client", "404": "unknown slot, team, profile or provider",
    "409": "the state is frozen", "429": "too many failed authentications",
}


def _operation(method: str, path: str, summary: str, body: str, public: bool) -> dict[str, Any]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in (part[1:-1] for part in path.split("/") if part.startswith("{"))]
    state_change = method != "GET" and body not in _HEALTH_BODIES  # health is not in the state file
    ok = {"description": "the change is made: the new state generation" if state_change else "OK",
          "content": {"application/json": {"schema": _CHANGED if state_change else {"type": "object"}}}}
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": (method.lower() + path.replace("/", "_").replace("{", "").replace("}", "")
                        .replace(".", "_")),
        "responses": {"200": ok, **{code: {"description": text, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}} for code, text in _ERRORS.items()}},
    }
    if params:
        operation["parameters"] = params
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    if public:
        operation["security"] = []
    return operation


def openapi(prefix: str, endpoints: list[tuple[str, str, str, str, bool]]) -> dict[str, Any]:
    """The document for `endpoints` (method, path under `prefix`, summary, body schema name, public)."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, public in endpoints:
        paths.setdefault(prefix + path, {})[method.lower()] = _operation(method, path, summary, body, public)
    return {
        "openapi": "3.1.0",
        "info": {"title": "broke admin API", "version": __version__,
                 "description": "Control broke's routing over HTTP: the same changes as the CLI and the dashboard. "
                                "Authenticate with the admin token from `broke connect --admin`."},
        "servers": [{"url": "/"}],
        "security": [{"admin": []}],
        "paths": paths,
        "components": {"securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
                       "schemas": {**BODIES, "Error": _ERROR}},
    }
