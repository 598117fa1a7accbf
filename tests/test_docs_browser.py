"""/docs and /redoc in headless Chromium, with every off-host request blocked."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page

from app.docs import CONTENT_SECURITY_POLICY
from tests.browser import BrowserSession, open_browser, requires_chromium
from tests.conftest import Server

REQUIRED_OPERATIONS = [
    ("POST", "/classify"),
    ("GET", "/generate"),
    ("GET", "/health/ready"),
]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# redoc 2.5.4 hard-codes its attribution logo at this URL. The page's
# Content-Security-Policy stops the request, and Chromium logs that on the console.
REDOC_LOGO_URL = "https://cdn.redoc.ly/redoc/logo-mini.svg"
ASSET_PATTERN = re.compile(r'(?:src|href)="([^"]+)"')


def _generated_example(server: Server) -> dict[str, object]:
    response = httpx.get(
        f"{server.url}/generate", params={"count": 1, "seed": 11}, timeout=10
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["examples"][0])


def _documented_operations(server: Server) -> list[tuple[str, str]]:
    response = httpx.get(f"{server.url}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    return sorted(
        (method.upper(), path)
        for path, item in response.json()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    )


def _rendered_operations(page: Page) -> list[tuple[str, str]]:
    summaries = page.locator(".opblock-summary")
    methods = summaries.locator(".opblock-summary-method").all_inner_texts()
    paths = summaries.locator(".opblock-summary-path").all_inner_texts()
    return sorted(
        (method.strip(), path.strip())
        for method, path in zip(methods, paths, strict=True)
    )


def _unexpected_console_errors(browser: BrowserSession) -> list[str]:
    return [text for text in browser.console_errors if REDOC_LOGO_URL not in text]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_loads_assets_from_service(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY

    assets = ASSET_PATTERN.findall(response.text)
    assert assets, response.text
    for asset in assets:
        assert asset.startswith("/static/docs/"), f"{page} loads {asset}"
        served = client.get(asset)
        assert served.status_code == 200, f"{asset}: {served.status_code}"
        assert len(served.content) > 0, asset


def test_docs_static_files_reject_unknown_asset(client: TestClient) -> None:
    response = client.get("/static/docs/missing.js")
    assert response.status_code == 404, response.text


@pytest.mark.slow
@requires_chromium
def test_swagger_ui_try_it_out_classifies(server: Server) -> None:
    example = _generated_example(server)
    documented = _documented_operations(server)

    with open_browser() as browser:
        page = browser.page
        page.goto(f"{server.url}/docs")
        page.locator(".opblock").first.wait_for()
        rendered = _rendered_operations(page)

        operation = page.locator("#operations-classify-classify_classify_post")
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        operation.locator("textarea.body-param__text").fill(
            json.dumps({"waveform": example["waveform"]})
        )
        operation.get_by_role("button", name="Execute").click()

        live = operation.locator(".live-responses-table tbody tr.response")
        live.first.wait_for()
        status = live.locator(".response-col_status").inner_text().strip()
        body_text = live.locator(".response-col_description pre").first.inner_text()
        browser.screenshot("docs-swagger-ui")

    assert rendered == documented, rendered
    for operation in REQUIRED_OPERATIONS:
        assert operation in rendered, rendered
    assert status == "200", body_text
    assert json.loads(body_text)["label"] == example["label"], body_text
    assert browser.blocked == [], browser.blocked
    assert browser.console_errors == [], browser.console_errors


@pytest.mark.slow
@requires_chromium
def test_redoc_renders_offline(server: Server) -> None:
    with open_browser() as browser:
        page = browser.page
        page.goto(f"{server.url}/redoc")
        title = page.locator("h1").first
        title.wait_for()
        title_text = title.inner_text()
        operations = page.locator("h2").all_inner_texts()

        # Search runs in a blob: worker, so a hit shows that the CSP allows it.
        page.get_by_placeholder("Search...").fill("classify")
        hits = page.get_by_role("search").locator("li")
        hits.first.wait_for()
        hit_text = hits.first.inner_text()
        browser.screenshot("docs-redoc", full_page=False)

    assert title_text == "wavecls (1.0.0)", title_text
    for heading in ["Classify", "Generate Examples", "Ready", "Model Info"]:
        assert heading in operations, operations
    assert "Classify" in hit_text, hit_text
    assert browser.blocked == [], browser.blocked
    assert _unexpected_console_errors(browser) == [], browser.console_errors
