"""Build the process-wide chat model from settings."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from openai import DefaultAioHttpClient
from pydantic import SecretStr

from session_service.config import Settings
from session_service.llm.offline import OfflineChatModel
from session_service.llm.openai import ChatOpenAIPassThrough


def build_chat_model(settings: Settings) -> BaseChatModel:
    if settings.llm_provider == "offline":
        return OfflineChatModel()
    return ChatOpenAIPassThrough(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        # Local OpenAI-compatible servers often need no key, but the client insists on one.
        api_key=settings.llm_api_key or SecretStr("unused"),
        timeout=settings.llm_timeout_seconds,
        # One turn must never call the model twice behind our back.
        max_retries=0,
        # The turn times every piece itself (LLM_TIMEOUT_SECONDS); langchain-openai's own
        # per-chunk timeout would add a task per chunk (bench/llm_stream.py measures it).
        stream_chunk_timeout=None,
        stream_usage=True,
        # The OpenAI client's aiohttp transport (its `openai[aiohttp]` extra): half the CPU
        # per streamed chunk of its default httpx one, which enters an anyio cancel scope for
        # every read (bench/llm_stream.py). Closed by `close_chat_model`.
        http_async_client=DefaultAioHttpClient(),
    )


async def close_chat_model(model: BaseChatModel) -> None:
    """Let go of the model's HTTP connections (at the end of the app's lifespan)."""
    client = getattr(model, "http_async_client", None)
    if client is not None:
        await client.aclose()
