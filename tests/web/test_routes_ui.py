"""The web page's HTTP side: content types, the strict CSP, caching, and no inline code."""

from __future__ import annotations

import re

import httpx
import pytest

from services.gateway.app import create_app
from services.gateway.routes_ui import STATIC_DIR


@pytest.fixture
async def client(mesh_settings):
    app = create_app(mesh_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as c:
        yield c


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/static/main.js", "text/javascript; charset=utf-8"),
        ("/static/styles.css", "text/css; charset=utf-8"),
    ],
)
async def test_serves_page_files_with_exact_types_and_strict_csp(client, path, content_type):
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["etag"].startswith('"')


async def test_etag_revalidation_answers_304_without_a_body(client):
    first = await client.get("/static/api.js")
    again = await client.get("/static/api.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    changed = await client.get("/static/api.js", headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200


async def test_head_gives_the_length_without_the_body(client):
    response = await client.head("/")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len((STATIC_DIR / "index.html").read_bytes())
    assert response.content == b""


@pytest.mark.parametrize(
    "path", ["/static/nope.js", "/static/../app.py", "/static/%2e%2e/app.py", "/static/", "/static/index.htm"]
)
async def test_unknown_static_paths_are_problem_404(client, path):
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "NOT_FOUND"


def test_page_has_no_inline_script_style_or_handlers():
    """The CSP forbids inline code, so none may exist (it would silently not run)."""
    for path in STATIC_DIR.glob("*.html"):
        html = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, f"inline script in {path.name}: {tag}"
        assert not re.search(r"<style\b", html), f"inline <style> in {path.name}"
        assert not re.search(r"\sstyle=", html), f"style attribute in {path.name}"
        assert not re.search(r"\son[a-z]+=", html), f"inline event handler in {path.name}"
    for path in STATIC_DIR.glob("*.js"):
        source = path.read_text()
        assert ".innerHTML" not in source, f"{path.name} must build DOM with textContent"
        assert "eval(" not in source


def test_every_form_control_has_a_label():
    html = (STATIC_DIR / "index.html").read_text()
    labelled = set(re.findall(r'<label for="([^"]+)"', html))
    for control_id in re.findall(r'<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"', html):
        tag = re.search(rf'<(?:input|select|textarea)\b[^>]*\bid="{control_id}"[^>]*>', html).group(0)
        if 'type="radio"' in tag:
            continue  # radios are wrapped by their label
        assert control_id in labelled, f"#{control_id} has no <label for>"


async def test_every_referenced_file_is_served(client):
    """index.html's assets and every module import resolve to a served file (no build step to catch it)."""
    html = (await client.get("/")).text
    wanted = set(re.findall(r'(?:src|href)="/static/([^"]+)"', html))
    for path in STATIC_DIR.glob("*.js"):
        wanted.update(re.findall(r'from "\./([^"]+)"', path.read_text()))
    assert {"main.js", "styles.css", "api.js", "events.js"} <= wanted
    for name in sorted(wanted):
        response = await client.get(f"/static/{name}")
        assert response.status_code == 200, name
