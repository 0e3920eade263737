"""The RAGFlow HTTP API client (no FastAPI imports): mirror sessions, ground answers."""
