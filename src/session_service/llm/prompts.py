"""The prompts the service sends besides the conversation itself."""

from __future__ import annotations

TITLE_PROMPT = (
    "Title this conversation: reply with a title of at most 8 words for the user's message "
    "below, in the language of the message, with no quotes and no final punctuation."
)
