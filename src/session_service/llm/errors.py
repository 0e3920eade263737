"""Turning a failed LLM call into the service's error: 504 for a timeout, 502 otherwise."""

from __future__ import annotations

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
    if isinstance(exc, TimeoutError | openai.APITimeoutError | httpx.TimeoutException):
        return "timeout", UpstreamTimeout("the LLM did not answer in time")
    if isinstance(exc, openai.APIStatusError):
        return "http_status", UpstreamFailed(f"the LLM failed: HTTP {exc.status_code}")
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return "connection", UpstreamFailed(f"the LLM failed: {type(exc).__name__}")
    return "other", UpstreamFailed(f"the LLM failed: {type(exc).__name__}")
