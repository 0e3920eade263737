"""Turning a failed LLM call into the service's error: 504 for a timeout, 502 otherwise."""

from __future__ import annotations

import httpx
import openai

from session_service.errors import ServiceError, UpstreamFailed, UpstreamTimeout


def llm_error(exc: BaseException) -> ServiceError:
    if isinstance(exc, TimeoutError | openai.APITimeoutError | httpx.TimeoutException):
        return UpstreamTimeout("the LLM did not answer in time")
    if isinstance(exc, openai.APIStatusError):
        return UpstreamFailed(f"the LLM failed: HTTP {exc.status_code}")
    return UpstreamFailed(f"the LLM failed: {type(exc).__name__}")
