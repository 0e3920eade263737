"""JSON from outside (request bodies, backup files) read strictly, so that nothing a client
sends can fail later, when it is stored or rendered.

Python's `json` accepts what JSON does not: `NaN`, `Infinity`, `-Infinity` (and `1e999`, read
as infinity), and lone surrogates (`"\\ud800"`, or their raw bytes) that no UTF-8 encoder, JSON
renderer or database will take later. It also nests as deep as Python's recursion allows, while
MariaDB refuses a JSON column nested deeper than 32 levels and pydantic will not render past
about 255. Each of these is a `json.JSONDecodeError` here.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# A \uD800-\uDFFF escape: only then can the parsed document hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_CONSTANT = re.compile(r"-?Infinity|NaN")
MAX_DEPTH = 16  # objects and arrays within each other; MariaDB's JSON columns allow 32


def loads_strict(body: bytes) -> Any:
    """`json.loads`, refusing what JSON itself refuses and what UTF-8 cannot encode."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("not valid UTF-8", repr(body[:80]), exc.start) from None

    def refuse_constant(name: str) -> Any:
        match = _CONSTANT.search(text)
        raise json.JSONDecodeError(
            f"{name} is not a JSON number", text, match.start() if match else 0
        )

    def finite(number: str) -> float:
        value = float(number)
        if math.isinf(value):
            raise json.JSONDecodeError(f"{number} is out of range", text, text.find(number))
        return value

    try:
        document = json.loads(text, parse_constant=refuse_constant, parse_float=finite)
    except RecursionError:
        raise _too_deep(text) from None
    if _depth(document) > MAX_DEPTH:
        raise _too_deep(text)
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            match = _SURROGATE_ESCAPE.search(text)
            position = match.start() if match else 0
            raise json.JSONDecodeError(
                "a lone surrogate (\\ud800-\\udfff) is not a character", text, position
            ) from None
    return document


def _depth(document: Any) -> int:
    """How many objects and arrays stand within each other (without recursing)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, level)
        stack.extend((item, level + 1) for item in value)
    return deepest


def _too_deep(text: str) -> json.JSONDecodeError:
    return json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", text, 0)
