"""The JSON API's OpenAPI 3 document, served at ``/api/openapi.json`` (docs/serve.md, "JSON API").

:data:`OPERATIONS` declares, per ``(method, path)`` of :data:`ssgan.serve.routes.ROUTES` under
``/api/``, its parameters, request body and answers; :func:`openapi` assembles them with the
running editor's values (its classes, directions and step limit). ``tests/test_serve_api.py``
checks that the declared operations are exactly the routes, and fuzzes a live server against the
document (schemathesis: no 5xx, no answer outside the document).

Every error is ``{"error": "one line"}`` (``Error``) with the status its :class:`ClientError` gives:
400 bad input, 404 unknown session or download, 409 an inversion already running, 413 too large,
415 not an image.
"""

from __future__ import annotations

import re
from typing import Any

from ssgan.serve.editor import DOWNLOADS, MAX_SEED, Editor
from ssgan.serve.engine import PARTS, SEEDS

OPENAPI_PATH = "/api/openapi.json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def query(name: str, schema: dict[str, Any], required: bool = False, what: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": what}


SESSION_QUERY = query("session", {"type": "string"}, True, "the tab's session id (from POST /api/session)")
SESSION_FIELD = {"type": "string", "description": "the tab's session id"}
SEQ = nullable({"type": "integer", "description": "the tab's request counter: an older request still "
                "waiting is answered {stale: true}"})
SEED = nullable({"type": "integer", "minimum": SEEDS[0], "maximum": SEEDS[1],
                 "description": f"null: a random seed in 0..{MAX_SEED}"})
STATE = {"200": ref("State")}
JOB = {"200": ref("Job")}
ERRORS = {"400": "bad input", "404": "unknown or expired session (the page starts a new one)",
          "409": "an inversion is already running in this tab", "413": "over the upload limits",
          "415": "not an image this server can read"}


def json_body(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": list(required)}}}}


def bytes_body(what: str) -> dict[str, Any]:
    return {"required": True, "description": what,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


def session_body() -> dict[str, Any]:
    return json_body({"session": SESSION_FIELD}, ("session",))


def edit_body(editor: Editor) -> dict[str, Any]:
    e = editor.engine
    classes = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": e.cfg.seg_dim - 1},
               "minItems": 1, "description": "class indices (GET /api/info)"}
    return json_body({
        "session": SESSION_FIELD, "op": {"type": "string", "enum": ["resample", "copy", "interpolate",
                                                                     "direction"]},
        "classes": classes, "part": {"type": "string", "enum": list(PARTS)}, "seed": SEED, "seq": SEQ,
        "t": {"type": "number", "minimum": 0, "maximum": 1, "description": "op interpolate"},
        "direction": {"type": "string", "enum": e.direction_names(), "description": "op direction"},
        "strength": {"type": "number", "minimum": -20, "maximum": 20, "description": "op direction"},
    }, ("session", "op", "classes"))


#: (method, path) → (summary, errors answered, parameters, request body, success answers); a body
#: or parameter list may depend on the editor (a function of it).
OPERATIONS: dict[tuple[str, str], tuple[str, tuple[str, ...], Any, Any, dict[str, Any]]] = {
    ("get", "/api/info"): ("the model and the limits", (), [], None, {"200": ref("Info")}),
    ("get", OPENAPI_PATH): ("this document", (), [], None, {"200": {"type": "object"}}),
    ("post", "/api/session"): ("a new session (seed 0, reference seed 1)", ("400",), [],
                               lambda e: json_body({}), STATE),
    ("get", "/api/state"): ("the session's state", ("404",), [SESSION_QUERY], None, STATE),
    ("post", "/api/sample"): ("a new face", ("400", "404"), [], lambda e: json_body({
        "session": SESSION_FIELD, "seed": SEED, "seq": SEQ,
        "truncation": nullable({"type": "number", "minimum": 0, "maximum": 1})}, ("session",)), STATE),
    ("post", "/api/reference"): ("the reference face", ("400", "404"), [], lambda e: json_body({
        "session": SESSION_FIELD, "seed": SEED, "seq": SEQ, "from_current": {"type": "boolean"}},
        ("session",)), STATE),
    ("post", "/api/edit"): ("an edit of the picked classes", ("400", "404"), [], edit_body, STATE),
    ("post", "/api/undo"): ("back one step", ("400", "404"), [], lambda e: session_body(), STATE),
    ("post", "/api/redo"): ("forward one step", ("400", "404"), [], lambda e: session_body(), STATE),
    ("post", "/api/latent"): ("open a compact W+ .npy as the current face", ("400", "404", "413"),
                              [SESSION_QUERY, query("name", {"type": "string"}, what="the file's name")],
                              lambda e: bytes_body("the .npy file (float, (n_latent, D); never unpickled)"),
                              STATE),
    ("post", "/api/invert"): ("start inverting an uploaded image", ("400", "404", "409", "413", "415"),
                              lambda e: [SESSION_QUERY, query("name", {"type": "string"}),
                                         query("steps", {"type": "integer", "minimum": 1,
                                                         "maximum": e.limits.max_invert_steps})],
                              lambda e: bytes_body("the image file (PNG, JPEG, …)"), JOB),
    ("get", "/api/invert"): ("the inversion job", ("404",), [SESSION_QUERY], None, {"200": ref("JobOf")}),
    ("post", "/api/invert/cancel"): ("stop the inversion at its next step", ("400", "404"), [],
                                     lambda e: session_body(), {"200": ref("JobOf")}),
    ("get", "/api/download/{kind}"): (
        "a file of the current face", ("404",),
        [SESSION_QUERY, {"name": "kind", "in": "path", "required": True,
                         "schema": {"type": "string", "enum": list(DOWNLOADS)}}], None,
        {"200": {"image/png": {"type": "string", "format": "binary"},
                 "application/octet-stream": {"type": "string", "format": "binary"}}}),
}

PICTURE = {"type": "string", "description": "a data:image/png;base64 URL"}
SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
    "Job": {"type": "object", "required": ["name", "steps", "done_steps", "status", "seconds"],
            "properties": {
        "name": {"type": "string"}, "steps": {"type": "integer"}, "done_steps": {"type": "integer"},
        "loss": nullable({"type": "number"}), "psnr": nullable({"type": "number"}),
        "status": {"type": "string", "enum": ["running", "done", "cancelled", "failed"]},
        "error": nullable({"type": "string"}), "seconds": {"type": "number"}}},
    "JobOf": {"type": "object", "required": ["job"], "properties": {"job": nullable(ref("Job"))}},
    "State": {"type": "object", "required": ["session", "seq"], "properties": {
        "session": {"type": "string"}, "seq": {"type": "integer"}, "stale": {"type": "boolean"},
        "position": {"type": "integer"}, "length": {"type": "integer"}, "can_undo": {"type": "boolean"},
        "can_redo": {"type": "boolean"}, "action": {"type": "string"},
        "classes": {"type": "array", "items": {"type": "integer"}}, "image": PICTURE, "mask": PICTURE,
        "labels": {"type": "string", "description": "the class index map, base64 uint8 (size, size)"},
        "diff": nullable({"type": "object", "properties": {
            "image": PICTURE, "inside": nullable({"type": "number"}), "outside": nullable({"type": "number"}),
            "classes": {"type": "array", "items": {"type": "integer"}}, "region": {"type": "string"}}}),
        "reference": {"type": "object", "properties": {"image": PICTURE, "mask": PICTURE,
                                                       "seed": nullable({"type": "integer"})}},
        "last": {"type": "object"}, "job": nullable(ref("Job"))}},
    "Info": {"type": "object",
             "required": ["size", "n_latent", "style_dim", "classes", "directions", "limits"],
             "properties": {
                 "size": {"type": "integer"}, "n_latent": {"type": "integer"},
                 "style_dim": {"type": "integer"},
                 "classes": {"type": "array", "items": {"type": "object", "properties": {
                     "index": {"type": "integer"}, "name": {"type": "string"},
                     "color": {"type": "array", "items": {"type": "integer"}},
                     "transparent": {"type": "boolean"}}}},
                 "parts": {"type": "array", "items": {"type": "string"}},
                 "directions": {"type": "array", "items": {"type": "string"}},
                 "direction_kind": {"type": "string"}, "truncation": {"type": "number"},
                 "device": {"type": "string"}, "limits": {"type": "object"}}},
}


def answers(success: dict[str, Any], errors: tuple[str, ...]) -> dict[str, Any]:
    """The responses object: JSON successes (or media type → schema for downloads), then errors."""
    out: dict[str, Any] = {}
    for status, schema in success.items():
        media = schema if "type" not in schema and "$ref" not in schema else {"application/json": schema}
        out[status] = {"description": "success", "content": {m: {"schema": s} for m, s in media.items()}}
    for status in errors:
        out[status] = {"description": ERRORS[status],
                       "content": {"application/json": {"schema": ref("Error")}}}
    return out


def openapi(editor: Editor) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``editor``'s API (its classes, directions and limits filled in)."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), (summary, errors, params, body, success) in OPERATIONS.items():
        name = re.sub(r"\W+", "_", f"{method}_{path[5:]}").strip("_")
        op: dict[str, Any] = {"summary": summary, "operationId": name,
                              "parameters": params(editor) if callable(params) else params,
                              "responses": answers(success, errors)}
        if body is not None:
            op["requestBody"] = body(editor)
        paths.setdefault(path, {})[method] = op
    return {"openapi": "3.0.3",
            "info": {"title": "ssgan serve", "version": "1",
                     "description": "The region editor's JSON API (docs/serve.md, 'JSON API')."},
            "paths": paths, "components": {"schemas": SCHEMAS}}
