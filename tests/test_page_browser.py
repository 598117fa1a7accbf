"""The page at / in headless Chromium against the service as a real process."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import open_browser, requires_chromium
from tests.conftest import Server

pytestmark = [pytest.mark.slow, requires_chromium]

VIEWPORT = (1280, 800)


def _generate_square(page: Page) -> None:
    page.get_by_label("Type").select_option("square")
    page.get_by_label("Cycles in the window").fill("7")
    page.get_by_label("Noise", exact=True).select_option("snr")
    page.get_by_label("Noise (SNR in dB)").fill("30")
    page.get_by_label("Seed").fill("5")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#status")).to_contain_text("Generated a square wave (seed 5)")


def _samples(page: Page) -> list[float]:
    text = page.get_by_label(re.compile("^Samples")).input_value()
    return [float(token) for token in re.split(r"[\s,]+", text) if token]


def test_page_serves_own_assets_only(server: Server) -> None:
    page = httpx.get(f"{server.url}/", timeout=10)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert re.findall(r'(?:src|href)="([^"]+)"', page.text) == [
        "/page/page.css",
        "/page/page.js",
    ]
    for asset, media_type in (("page.js", "text/javascript"), ("page.css", "text/css")):
        response = httpx.get(f"{server.url}/page/{asset}", timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(media_type)
    missing = httpx.get(f"{server.url}/page/../main.py", timeout=10)
    assert missing.status_code == 404, missing.text


def test_page_classifies_generated_square(server: Server) -> None:
    with open_browser(viewport=VIEWPORT) as browser:
        page = browser.page
        page.goto(f"{server.url}/")
        expect(page.locator("#model-info")).to_contain_text("Model version")

        _generate_square(page)
        assert len(_samples(page)) == 100
        page.get_by_role("button", name="Classify").click()

        expect(page.locator("#result")).to_be_visible()
        top_label = page.locator("#top-label").inner_text()
        ood = page.locator("#ood").inner_text()
        bars = page.get_by_role("meter")
        square_bar = page.get_by_role("meter", name="square")
        browser.screenshot("page")

        assert top_label == "square"
        assert ood.startswith("in distribution"), ood
        assert bars.count() == 3
        assert float(square_bar.get_attribute("aria-valuenow") or 0) > 50
        assert page.locator("#error").is_hidden()
        assert browser.blocked == [], browser.blocked
        assert browser.console_errors == [], browser.console_errors


def test_page_shows_server_error_for_bad_paste(server: Server) -> None:
    with open_browser(viewport=VIEWPORT) as browser:
        page = browser.page
        page.goto(f"{server.url}/")
        samples = page.get_by_label(re.compile("^Samples"))
        classify = page.get_by_role("button", name="Classify")

        samples.fill("1, 2\n3 x")
        expect(page.locator("#samples-count")).to_contain_text("4 values")
        classify.click()
        error = page.get_by_role("alert")
        expect(error).to_be_visible()
        length_error = error.inner_text()

        samples.fill(", ".join(["0.5"] * 42 + ["abc"] + ["0.5"] * 57))
        classify.click()
        expect(error).to_contain_text("sample 42")
        type_error = error.inner_text()
        browser.screenshot("page-error")

        assert "the service rejected the input" in length_error, length_error
        assert "expected exactly 100 samples, got 4" in length_error, length_error
        assert "expected a number, got a string" in type_error, type_error
        assert '"abc"' in type_error, type_error
        assert page.locator("#result").is_hidden()
        assert browser.blocked == [], browser.blocked


def test_page_draws_with_mouse(server: Server) -> None:
    with open_browser(viewport=VIEWPORT) as browser:
        page = browser.page
        page.goto(f"{server.url}/")
        expect(page.locator("#model-info")).to_contain_text("Model version")
        box = page.locator("#plot").bounding_box()
        assert box is not None

        # A stroke across the top half of the plot, left to right.
        y = box["y"] + box["height"] * 0.25
        page.mouse.move(box["x"] + box["width"] * 0.1, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.9, y, steps=12)
        page.mouse.up()
        samples = _samples(page)

        assert len(samples) == 100
        assert sum(value > 0.3 for value in samples) >= 60, samples
        assert browser.blocked == [], browser.blocked
        assert browser.console_errors == [], browser.console_errors
