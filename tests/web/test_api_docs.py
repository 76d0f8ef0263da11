"""The docs page ``/docs``: Swagger UI from the hub's own vendored assets renders
``/openapi.json`` in Chromium with every request going to the hub (anything else is
aborted, as with no internet), and "Try it out" calls the hub."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.support import Server
from tests.web.support import DESKTOP, Pages, expect, shot


def test_the_docs_page_renders_the_description_offline(pages: Pages, hub: Server) -> None:
    context = pages.context(viewport=DESKTOP)
    elsewhere: list[str] = []

    def only_the_hub(route: Any) -> None:
        if route.request.url.startswith(hub.base + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_hub)
    tab = pages.watch(context.new_page(), "docs")
    tab.goto(f"{hub.base}/docs")
    expect(tab.locator(".info .title")).to_contain_text("roomlog HTTP API")
    doc = httpx.get(f"{hub.base}/openapi.json", timeout=15).json()
    operations = sum(len(item) for item in doc["paths"].values())
    expect(tab.locator(".opblock")).to_have_count(operations)
    expect(tab.locator(".opblock-summary-path", has_text="/v1/rooms/{room}/commands")
           ).to_have_count(1)

    live = tab.locator(".opblock", has=tab.locator(".opblock-summary-path",
                                                   has_text="/health/live"))
    live.locator(".opblock-summary").click()
    live.get_by_role("button", name="Try it out").click()
    live.get_by_role("button", name="Execute").click()
    expect(live.locator(".live-responses-table td.response-col_status:not(.col_header)")
           ).to_contain_text("200")
    expect(live.locator(".live-responses-table")).to_contain_text('"status": "ok"')
    shot(tab, "api-docs")
    assert elsewhere == [], elsewhere


def test_the_docs_page_runs_only_what_the_hub_serves(hub: Server) -> None:
    page = httpx.get(f"{hub.base}/docs", timeout=15)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js", "LICENSE.swagger-ui"):
        assert httpx.get(f"{hub.base}/docs/assets/{asset}", timeout=15).status_code == 200
    assert httpx.get(f"{hub.base}/docs/assets/nothing.js", timeout=15).status_code == 404
