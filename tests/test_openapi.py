"""/docs alone is enough to use the API: every route tagged, summarised, with its errors and
examples."""

from __future__ import annotations

from httpx import AsyncClient


async def test_every_operation_is_documented(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) >= 14
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        assert operation.get("tags"), where
        assert operation.get("summary"), where
        assert operation.get("description"), where
        codes = set(operation["responses"])
        assert any(code.startswith("2") for code in codes), where
        if path.startswith("/api/"):
            assert {"401", "503"} <= codes, where
        if "admin" in operation["tags"]:
            assert "403" in codes, where
        body = operation.get("requestBody")
        if body:
            reference = body["content"]["application/json"]["schema"]
            name = (reference.get("$ref") or reference["anyOf"][0]["$ref"]).rsplit("/", 1)[-1]
            assert schema["components"]["schemas"][name].get("examples"), where
    rejoin = schema["paths"]["/api/sessions/{session_id}/messages/{message_id}/stream"]["get"]
    assert "rejoin" in rejoin["summary"]
    for name in ("SessionPublic", "MessagePublic", "ErrorBody"):
        assert schema["components"]["schemas"][name].get("examples"), name


async def test_docs_and_the_chat_page_are_served(client: AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    page = await client.get("/")
    assert page.status_code == 200
    assert "<title>session-service</title>" in page.text
    assert (await client.get("/static/app.js")).status_code == 200
