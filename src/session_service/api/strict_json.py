"""Request bodies parsed as strict JSON, so no input a client can send reaches a 500.

Python's `json` accepts what JSON does not: `NaN`, `Infinity`, `-Infinity` (and `1e999`, read
as infinity), and lone surrogates (`"\\ud800"`, or their raw bytes) that no UTF-8 encoder, JSON
renderer or database will take later. FastAPI turns a `JSONDecodeError` raised here into its
usual 422 (`json_invalid`), before anything is validated or stored. Used as the routers'
`route_class`, FastAPI's documented way to change how a request is read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

# A \uD800-\uDFFF escape: only then can the parsed document hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_CONSTANT = re.compile(r"-?Infinity|NaN")


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

    document = json.loads(text, parse_constant=refuse_constant, parse_float=finite)
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


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
