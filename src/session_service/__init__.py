"""session-service: chat sessions with a pooled LLM agent each, persisted in MySQL."""

__version__ = "0.1.0"
