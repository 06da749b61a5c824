"""The app factory: wires settings -> executor (embedded sandbox pool, or Redis-queued workers) -> reward
service -> routes, in reading order."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import protocol
from service.auth import BearerAuthMiddleware
from service.body_limit import BodyLimitMiddleware
from service.errors import ServiceError, Unavailable
from service.executors import embedded_executor, queued_executor
from service.metrics import Metrics
from service.request_metrics import RequestMetricsMiddleware
from service.rewards import Executor, RewardService
from service.settings import Settings

log = logging.getLogger(__name__)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": protocol.ErrorResponse} for code in (400, 401, 413, 422, 429, 503, 504)}


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend: AbstractAsyncContextManager[Executor] = (
            queued_executor(settings, metrics) if settings.redis_url else embedded_executor(settings))
        async with backend as executor:
            app.state.rewards = RewardService(executor, settings, metrics)
            try:
                yield
            finally:
                app.state.rewards = None

    app = FastAPI(title="AceCoder reward service", version="0.1.0", lifespan=lifespan)
    app.state.rewards = None
    app.state.metrics = metrics
    _install_error_handlers(app)
    _install_routes(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    # Outside the body limit (an unauthenticated caller is refused before its body is read), inside the
    # request metrics (refusals are counted).
    app.add_middleware(BearerAuthMiddleware, tokens=[t.get_secret_value() for t in settings.auth_tokens])
    _install_request_metrics(app, metrics)
    return app


def _rewards(request: Request) -> RewardService:
    service = request.app.state.rewards
    if service is None:
        raise Unavailable("the sandbox pool is not ready")
    return service


def _install_routes(app: FastAPI) -> None:
    @app.get("/health", responses={503: {"description": "starting, no zygote left, or Redis unreachable"}})
    async def health(request: Request) -> JSONResponse:
        rewards = request.app.state.rewards
        if rewards is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        ok, detail = rewards.executor.health()
        return JSONResponse({"status": "ok" if ok else "unavailable", **detail}, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_route(request: Request) -> Response:
        return PlainTextResponse(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/rewards", response_model=protocol.RewardResponse, responses=ERROR_RESPONSES)
    async def rewards(body: protocol.RewardRequest, request: Request) -> Response:
        result = await _rewards(request).score(body)
        # Serialised once by pydantic-core; returning the model would make FastAPI validate it again.
        return Response(result.model_dump_json(), media_type="application/json")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The framework's own refusals (unparsable body, unknown route, wrong method), in our error shape.
        error: dict[str, object] = {"code": "bad_request" if exc.status_code == 400 else "http_error",
                                    "message": str(exc.detail)}
        if exc.status_code == 400:
            error["field"] = "body"
        return JSONResponse({"error": error}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        field = _field_of(first)
        details = [{"field": _field_of(e), "message": e["msg"]} for e in errors[:20]]
        body = {"error": {"code": "invalid_request", "message": f"{field}: {first['msg']}", "field": field,
                          "details": details}}
        return JSONResponse(body, status_code=422)


def _field_of(error: Any) -> str:
    """`items.0.tests` from pydantic's loc; a JSON syntax error (loc = byte offset) is the body's."""
    if error.get("type") == "json_invalid":
        return "body"
    return ".".join(str(p) for p in error["loc"][1:]) or "body"


def _install_request_metrics(app: FastAPI, metrics: Metrics) -> None:
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
