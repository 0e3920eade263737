"""Request bodies read as strict JSON (`session_service.json_input`), so that no input a
client can send reaches a 500: FastAPI turns the `JSONDecodeError` into its usual 422
(`json_invalid`) before anything is validated or stored. Used as the routers' `route_class`,
FastAPI's documented way to change how a request is read."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from session_service.json_input import loads_strict


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
