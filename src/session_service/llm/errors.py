"""Turning a failed LLM call into the service's error: 504 for a timeout, 502 otherwise."""

from __future__ import annotations

import aiohttp
import httpx
import openai

from session_service import metrics
from session_service.errors import ServiceError, UpstreamFailed, UpstreamTimeout


def llm_error(exc: BaseException) -> ServiceError:
    """The service's error for a failed LLM call, counted by kind in the metrics."""
    kind, error = _classify(exc)
    metrics.LLM_ERRORS.labels(kind).inc()
    return error


def _classify(exc: BaseException) -> tuple[str, ServiceError]:
    if (refused := _connection_failure(exc)) is not None:
        return "connection", UpstreamFailed(f"the LLM failed: {type(refused).__name__}")
    if isinstance(exc, TimeoutError | openai.APITimeoutError | httpx.TimeoutException):
        return "timeout", UpstreamTimeout("the LLM did not answer in time")
    if isinstance(exc, openai.APIStatusError):
        return "http_status", UpstreamFailed(f"the LLM failed: HTTP {exc.status_code}")
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return "connection", UpstreamFailed(f"the LLM failed: {type(exc).__name__}")
    return "other", UpstreamFailed(f"the LLM failed: {type(exc).__name__}")


def _connection_failure(exc: BaseException) -> BaseException | None:
    """A connection refused or closed by the LLM: the OpenAI client's aiohttp transport
    reports both as a connect timeout (its map sends every aiohttp.ClientConnectionError
    there), so the cause it keeps is asked instead."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
            return cause
        cause = cause.__cause__
    return None
