"""The JSON body routes' fast path: a valid `application/json` body goes straight to its endpoint.

FastAPI's per-request work for a body route (its content type parsed by `email.message`, the stdlib JSON
decoder, dependency solving, two exit stacks) was a third of the gateway's CPU for a cached `/get_reward`.
Whatever the fast path does not take is handed, body replayed, to FastAPI's own handling, so every refusal
is FastAPI's, unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic_core
from fastapi import Request
from fastapi._compat import ModelField
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class JsonBodyRoute(APIRoute):
    """A route whose endpoint takes (its body's model, the Request) and returns a Response gets a fast path: a
    body sent as `application/json` that parses (pydantic-core's parser, which reads JSON as the stdlib does, at a
    quarter of the cost) to an object that validates (FastAPI's own validation of the body field) goes straight to
    the endpoint, without FastAPI's per-request work (its content type parsed by `email.message`, the stdlib
    decoder, dependency solving, two exit stacks). Anything else (another content type, bad JSON, a field in
    error, a body that could not be read) goes to FastAPI's own handling, the body replayed to it: every refusal
    is FastAPI's, unchanged, and so is any error the endpoint raises (the app's handlers answer it). Routes of
    another shape (no body: /health, /metrics) are plain APIRoutes."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        names = _body_and_request(endpoint)
        if names is not None and self.body_field is not None and not self.dependencies:
            self.app = _json_body_app(self.app, self.body_field, endpoint, *names)


def _json_body_app(general: ASGIApp, body_field: ModelField, endpoint: Callable[..., Awaitable[Response]],
                   body_name: str, request_name: str) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            body = await request.body()
        except Exception as exc:  # cut short, or over the size limit: FastAPI meets the same error
            await general(scope, _replay(receive, exc), send)
            return
        value = _valid_body(scope, body, body_field)
        if value is None:
            await general(scope, _replay(receive, body), send)
            return
        response = await endpoint(**{body_name: value, request_name: request})  # its body is read: kept
        await response(scope, receive, send)

    return app


def _replay(receive: Receive, first: bytes | Exception) -> Receive:
    """`receive`, after one message: the whole body, or the error reading it raised."""
    replayed = False

    async def replaying() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        if isinstance(first, Exception):
            raise first
        return {"type": "http.request", "body": first, "more_body": False}

    return replaying


def _valid_body(scope: Scope, body: bytes, body_field: ModelField) -> Any:
    """The validated body, or None where FastAPI's handling must answer."""
    content_type = next((v for k, v in scope["headers"] if k == b"content-type"), None)  # the first, as FastAPI
    if content_type != b"application/json":
        return None
    try:
        data = pydantic_core.from_json(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    value, errors = body_field.validate(data, {}, loc=("body",))
    return None if errors else value


def _body_and_request(endpoint: Callable[..., Any]) -> tuple[str, str] | None:
    """(body parameter, request parameter) of an `async (Model, Request) -> Response` endpoint, else None."""
    signature = inspect.signature(endpoint, eval_str=True)
    kinds = {name: p.annotation for name, p in signature.parameters.items()}
    bodies = [n for n, a in kinds.items() if isinstance(a, type) and issubclass(a, BaseModel)]
    requests = [n for n, a in kinds.items() if a is Request]
    returns = signature.return_annotation
    if (len(kinds) != 2 or len(bodies) != 1 or len(requests) != 1 or not inspect.iscoroutinefunction(endpoint)
            or not (isinstance(returns, type) and issubclass(returns, Response))):
        return None
    return bodies[0], requests[0]
