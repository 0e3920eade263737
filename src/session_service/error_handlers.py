"""How errors are answered: JSON with `detail` and `code` (api-v2 §6), whatever raised them;
a request that lost its database asks to run again (`middleware.DatabaseRetry`)."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from session_service.db.contention import (
    UNAVAILABLE,
    Busy,
    commit_in_doubt,
    is_contention,
    is_deadlock,
    is_refused_value,
)
from session_service.errors import DatabaseUnavailable, InvalidInput, ServiceError
from session_service.middleware import run_again

log = logging.getLogger(__name__)

# Errors that mean "the database did not answer" (or held the rows, or refused a value), as
# opposed to a bug in a query.
DATABASE_ERRORS = (*UNAVAILABLE, sa_exc.DataError)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _invalid_input)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, _database_error)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse(
        {"detail": exc.detail, "code": exc.code}, status_code=exc.status_code, headers=exc.headers
    )


async def _invalid_input(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 (its list of errors as `detail`), with the code of our own 422s."""
    assert isinstance(exc, RequestValidationError)
    body = {"detail": jsonable_encoder(exc.errors()), "code": InvalidInput.code}
    return JSONResponse(body, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and request.method in ("POST", "PATCH", "PUT"):
        # FastAPI's answer to a body it cannot even decode (invalid UTF-8): invalid input.
        error = {"type": "json_invalid", "loc": ("body",), "msg": "not valid JSON in UTF-8"}
        return await _invalid_input(request, RequestValidationError([error]))
    if not is_body_allowed_for_status_code(exc.status_code):
        return await http_exception_handler(request, exc)  # a status without a body
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")  # "not_found", ...
    body = {"detail": exc.detail, "code": code}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """409, 422 or 503; the request runs again (middleware.DatabaseRetry) if it lost a
    deadlock (Galera: a certification conflict) or its connection (its node left: the next
    run connects to another), not if no connection could be made (every host was tried)."""
    if is_contention(exc):  # the database is up: another transaction held the rows
        log.info("contention on %s %s: %s", request.method, request.url.path, exc)
        if is_deadlock(exc):  # lost at once; a lock wait timed out has waited long enough
            run_again(request.scope, in_doubt=False)
        return await _service_error(request, Busy())
    if is_refused_value(exc):  # the database is up: it will not store this value
        log.info("value refused on %s %s: %s", request.method, request.url.path, exc)
        return await _service_error(
            request, InvalidInput("a value in the request cannot be stored by the database")
        )
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    in_doubt = commit_in_doubt(exc)
    if in_doubt or getattr(exc, "connection_invalidated", False):  # lost, not never made
        run_again(request.scope, in_doubt=in_doubt)
    return await _service_error(
        request, DatabaseUnavailable("database unavailable, try again later")
    )
