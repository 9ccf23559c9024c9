"""/openapi.json and /docs served by the app on a real socket: the document the app builds,
the reference page and each of its files with its media type, nothing referenced from
elsewhere; and what the contract test found, each with its own test."""

from __future__ import annotations

import re
from importlib import resources

import httpx
import pytest
import trio

from gestor.api._docs import ASSETS, CSP
from gestor.api._openapi import openapi_document
from gestor.store import KeyStore
from tests.integration._keys import bearer, mint
from tests.integration._served import PROBLEM, Served, served

__all__ = ["served"]  # the fixture, imported for pytest

#: What a page or script names to load: src="..." and href="..." (HTML), url: "..." (JS).
_URL = re.compile(rb"""\b(?:src|href)\s*=\s*["']([^"']+)|\burl:\s*["']([^"']+)""")


@pytest.fixture
async def http(served: Served) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        yield client


async def test_the_document_is_served_without_a_key(served: Served,
                                                     http: httpx.AsyncClient) -> None:
    with trio.fail_after(60):
        response = await http.get("/openapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == openapi_document(served.app)
        again = await http.get("/openapi.json")
        assert again.content == response.content


async def test_the_reference_page_and_its_files_are_served_from_the_package(
        http: httpx.AsyncClient) -> None:
    with trio.fail_after(60):
        page = await http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["content-security-policy"] == CSP
        assert "connect-src 'self'" in CSP and "default-src 'none'" in CSP
        init = await http.get("/docs/init.js")
        # Every file the page and its script name is this server's own, by a relative path.
        named = {(a or b).decode() for text in (page.content, init.content)
                 for a, b in _URL.findall(text)}
        assert named >= {"docs/swagger-ui.css", "docs/swagger-ui-bundle.js", "docs/init.js",
                         "openapi.json"}
        for url in named:
            assert "//" not in url and not url.startswith("/"), url
            if url.startswith("data:"):
                continue
            answer = await http.get("/" + url)
            assert answer.status_code == 200, url
        assert "validatorUrl: null" in init.text  # no badge fetched from elsewhere
        for name, media in ASSETS.items():
            answer = await http.get(f"/docs/{name}")
            assert answer.status_code == 200, name
            assert answer.headers["content-type"] == media
            shipped = (resources.files("gestor.api") / "swagger_ui" / name).read_bytes()
            assert answer.content == shipped
        bundle = await http.get("/docs/swagger-ui-bundle.js")
        assert b"sourceMappingURL" not in bundle.content
        assert 1_000_000 < len(bundle.content) < 3_000_000
        for name in ("index.html", "../_docs.py", "swagger-ui.js", "x"):
            missing = await http.get(f"/docs/{name}")
            assert missing.status_code == 404, name
            assert missing.headers["content-type"] == PROBLEM


async def test_rotating_a_key_with_a_null_grace_is_a_422(served: Served,
                                                         http: httpx.AsyncClient) -> None:
    """`{"grace": null}` was let through to an assertion: a 500."""
    keys = KeyStore(served.app.runtime.store.bridge)
    with trio.fail_after(60):
        _, admin = await mint(keys, "rotator", role="admin")
        key_id, _ = await mint(keys, "web-shop")
        before = await served.counts()
        response = await http.post(f"/v1/admin/keys/{key_id}/rotate", json={"grace": None},
                                   headers=bearer(admin))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM
        assert (response.json()["code"], response.json()["field"]) == ("INVALID_FIELD", "grace")
        assert await served.counts() == before
        rotated = await http.post(f"/v1/admin/keys/{key_id}/rotate", json={"grace": 60},
                                  headers=bearer(admin))
        assert rotated.status_code == 201, rotated.text
        assert rotated.json()["replaces"]["id"] == key_id


async def test_the_alarm_feed_without_an_upgrade_answers_as_documented(
        served: Served, http: httpx.AsyncClient) -> None:
    """The websocket is in the document too (`x-websocket`); a plain GET to it gets one of
    its documented answers, a problem."""
    keys = KeyStore(served.app.runtime.store.bridge)
    with trio.fail_after(60):
        _, viewer = await mint(keys, "feed-viewer", role="viewer")
        document = (await http.get("/openapi.json")).json()
        feed = document["paths"]["/v1/alarms"]["get"]
        assert feed["x-websocket"] is True and "101" in feed["responses"]
        for headers in ({}, bearer(viewer)):
            response = await http.get("/v1/alarms", headers=headers)
            assert str(response.status_code) in feed["responses"], response.status_code
            assert response.headers["content-type"] == PROBLEM
