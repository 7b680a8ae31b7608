"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a hub filled
by the demo app's real traffic: every page loads without console errors, its numbers are the
query API's for the same window, filters and the time-range picker change what is shown, the
request log shows masked headers and bodies, and the login guards every page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from playwright.sync_api import Browser, Page

from tests.support.dashboard import ENV, TOKEN, Demo, log_in

PAGES = {
    "apps": "/",
    "traffic": "",
    "endpoints": "/endpoints",
    "endpoint": "/endpoint?endpoint=" + quote("GET /api/items/{item_id}"),
    "errors": "/errors",
    "consumers": "/consumers",
    "groups": "/groups",
    "consumer": "/consumer?consumer=ak_live_acme_7f3a",
    "requests": "/requests",
    "instances": "/instances?range=6h",
    "alerts": "/alerts",
}
"""Page name -> path under the app (``/`` is the hub's own)."""
CHARTED = {"traffic", "endpoint", "errors", "consumer"}


def url_of(demo: Demo, name: str) -> str:
    path = PAGES[name]
    return demo.url + (path if name == "apps" else demo.app_path + path)


def open_page(page: Page, url: str) -> Page:
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    page.wait_for_load_state("networkidle")
    return page


def window(page: Page) -> dict[str, str]:
    """The exact window the page used (the query API parses these times back)."""
    element = page.locator("#window")
    return {
        "since": element.get_attribute("data-since") or "",
        "until": element.get_attribute("data-until") or "",
    }


def cells(page: Page, row_selector: str) -> list[list[str]]:
    """The exact numbers (``data-value``) of each row's number cells."""
    return page.eval_on_selector_all(
        row_selector,
        "rows => rows.map(r => Array.from(r.querySelectorAll('[data-value]')).map(c => c.dataset.value))",
    )


def data(page: Page, selector: str, name: str) -> list[str]:
    """The ``data-<name>`` attribute of every element the selector finds."""
    return page.eval_on_selector_all(selector, f"es => es.map(e => e.getAttribute('data-{name}'))")


def kpis(page: Page) -> dict[str, str]:
    return dict(zip(data(page, "[data-kpi]", "kpi"), data(page, "[data-kpi]", "value"), strict=True))


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def acme_list_request(demo: Demo) -> str:
    """A logged GET /api/items/ of a consumer with an API key (a masked header)."""
    params = {"consumer": "ak_live_acme_7f3a", "method": "GET", "path": "/api/items/", "limit": 1}
    [item] = demo.get("requests", since="1h", **params)["items"]
    return str(item["uuid"])


# -- every page ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_loads_without_console_errors(page: Page, demo: Demo, name: str) -> None:
    open_page(page, url_of(demo, name))
    assert page.locator("h1").first.is_visible()
    if name in CHARTED:  # uPlot drew every chart of the page
        charts = page.locator("[data-chart]")
        assert charts.count() > 0
        assert page.locator("[data-chart] .uplot canvas").count() == charts.count()
    if name != "apps":  # the app's navigation leads to every page family, alerts included
        hrefs = page.eval_on_selector_all("[data-nav]", "links => links.map(a => a.getAttribute('href'))")
        assert [urlsplit(h).path for h in hrefs] == [
            demo.app_path + suffix
            for suffix in ("", "/endpoints", "/errors", "/consumers", "/requests", "/instances", "/alerts")
        ]


def test_each_page_is_reachable_by_links_from_the_apps_page(page: Page, demo: Demo) -> None:
    open_page(page, demo.url + "/")
    page.click(f'tr[data-app="{demo.client_id}/{ENV}"] a >> nth=0')
    page.wait_for_url(demo.url + demo.app_path)
    for name in ("endpoints", "errors", "consumers", "requests", "instances", "alerts", "traffic"):
        page.click(f'[data-nav="{name}"]')
        page.wait_for_load_state("networkidle")
        assert page.locator(f'[data-nav="{name}"].active').count() == 1
    assert page.locator("#alerts-not-configured").count() == 0  # back on traffic
    page.click('[data-nav="endpoints"]')
    page.click('tr[data-endpoint="GET /api/items/{item_id}"] td.path a')
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == "GET /api/items/{item_id}"
    page.click('[data-nav="requests"]')
    page.click("#requests-table tbody tr a >> nth=0")
    page.wait_for_load_state("networkidle")
    assert page.locator("#request-facts").is_visible()


def test_screenshots_of_each_page(
    page: Page, demo: Demo, screenshots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Written to the folder printed here (``APITALLY_DASHBOARD_SCREENSHOTS=docs/screenshots``
    regenerates the README's)."""
    shots = {name: url_of(demo, name) for name in PAGES if name != "alerts"}
    shots["instances"] = url_of(demo, "instances").replace("range=6h", "range=1h")
    for name, url in shots.items():
        open_page(page, url)
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    item = demo.get(
        "requests", since="1h", consumer="ak_live_acme_7f3a", method="GET", path="/api/items/", limit=1
    )
    open_page(page, f"{demo.url}{demo.app_path}/requests/{item['items'][0]['uuid']}")
    page.screenshot(path=str(screenshots / "request.png"), full_page=True)
    written = sorted(p.name for p in screenshots.glob("*.png"))
    assert {f"{name}.png" for name in [*shots, "request"]} <= set(written)
    with capsys.disabled():
        print(f"\ndashboard screenshots: {screenshots}")


# -- the numbers are the query API's ---------------------------------------------------------------


def test_traffic_numbers_equal_the_api(page: Page, demo: Demo) -> None:
    open_page(page, url_of(demo, "traffic") + "?range=1h")
    bounds = window(page)
    overview = demo.get("overview", **bounds)
    shown = kpis(page)
    assert len(shown) == 11
    for key, value in shown.items():
        assert value == as_text(overview[key]), key
    assert overview["requests"] > 1000
    series = demo.get("timeseries", **bounds, bucket="1m", percentiles="false")
    rows = cells(page, "#traffic-table tbody tr")
    expected = [
        [
            as_text(v)
            for v in (p["requests"], *(p["status_classes"].get(c, 0) for c in ("2xx", "3xx", "4xx", "5xx")))
        ]
        + [as_text(p[k]) for k in ("error_rate", "request_bytes", "response_bytes")]
        for p in reversed(series["points"])
    ]
    assert rows == expected
    # the chart draws the same buckets, as requests per minute stacked by status class
    spec = page.evaluate("JSON.parse(document.getElementById('chart-requests').textContent)")
    plotted = {x: sum(s["values"][i] for s in spec["series"]) for i, x in enumerate(spec["x"])}
    for point in series["points"]:
        assert plotted[point["bucket"]] == pytest.approx(point["requests_per_minute"], abs=0.01)


def test_endpoints_table_equals_the_api_and_sorts(page: Page, demo: Demo) -> None:
    open_page(page, url_of(demo, "endpoints"))
    bounds = window(page)
    api = demo.get("endpoints", **bounds, include_idle="true")["endpoints"]
    keys = ["requests", "client_errors", "server_errors", "error_rate", "p50_ms", "p75_ms", "p95_ms"]
    keys += ["p99_ms", "apdex", "request_bytes", "response_bytes"]
    assert cells(page, "#endpoints-table tbody tr") == [[as_text(e[k]) for k in keys] for e in api]
    rows = data(page, "#endpoints-table tbody tr", "endpoint")
    assert rows == [f"{e['method']} {e['path']}" for e in api]
    assert len(rows) >= 7
    page.click("#endpoints-table th a:text-is('Requests')")
    page.wait_for_load_state("networkidle")
    assert parse_qs(urlsplit(page.url).query)["sort"] == ["requests"]
    by_requests = demo.get("endpoints", **window(page), include_idle="true", sort="requests")["endpoints"]
    rows = data(page, "#endpoints-table tbody tr", "endpoint")
    assert rows == [f"{e['method']} {e['path']}" for e in by_requests]
    page.click("#endpoints-table th a:text-is('Requests ▼')")  # again: the other way round
    page.wait_for_load_state("networkidle")
    rows = data(page, "#endpoints-table tbody tr", "endpoint")
    ascending = demo.get("endpoints", **window(page), include_idle="true", sort="requests", order="asc")
    assert rows == [f"{e['method']} {e['path']}" for e in ascending["endpoints"]]


def test_consumers_equal_the_api(page: Page, demo: Demo) -> None:
    open_page(page, url_of(demo, "consumers"))
    bounds = window(page)
    for sort in ("last_seen", "requests"):  # most recently seen first (the default), or by requests
        api = demo.get("consumers", **bounds, sort=sort)["consumers"]
        identifiers = data(page, "#consumers-table tbody tr", "consumer")
        assert identifiers == [c["identifier"] for c in api]
        assert {"ak_live_acme_7f3a", "ios-app"} <= set(identifiers)
        keys = ["requests", "client_errors", "server_errors", "error_rate"]
        assert cells(page, "#consumers-table tbody tr") == [[as_text(c[k]) for k in keys] for c in api]
        if sort == "last_seen":
            page.click("#consumers-table th a:text-is('Requests')")
            page.wait_for_load_state("networkidle")
            assert parse_qs(urlsplit(page.url).query)["sort"] == ["requests"]
            bounds = window(page)
    open_page(page, url_of(demo, "consumers").replace("/consumers", "/groups"))
    groups = demo.get("consumer-groups", **window(page))["groups"]
    keys = ["consumers", "requests", "client_errors", "server_errors", "error_rate"]
    assert cells(page, "#groups-table tbody tr") == [[as_text(g[k]) for k in keys] for g in groups]
    assert {g["group"] for g in groups} >= {"Enterprise", "Mobile"}
    open_page(page, url_of(demo, "consumers"))
    page.click('tr[data-consumer="ak_live_acme_7f3a"] a')
    page.wait_for_load_state("networkidle")
    consumer = demo.get("consumers/ak_live_acme_7f3a", **window(page))
    shown = kpis(page)
    assert shown == {k: as_text(consumer[k]) for k in shown}
    assert "Acme Corp" in page.locator("#consumer-facts").inner_text()


def test_errors_equal_the_api(page: Page, demo: Demo) -> None:
    open_page(page, url_of(demo, "errors"))
    bounds = window(page)
    statuses = demo.get("error-status-codes", **bounds)["error_status_codes"]
    rows = data(page, "#error-status-table tbody tr", "error-status")
    assert rows == [f"{e['method']} {e['path']} {e['status_code']}" for e in statuses]
    assert cells(page, "#error-status-table tbody tr") == [[str(e["requests"])] for e in statuses]
    assert {e["status_code"] for e in statuses} >= {401, 404, 422, 500}
    validation = demo.get("validation-errors", **bounds)
    assert cells(page, "#validation-table tbody tr") == [
        [str(v["count"]), str(v["consumers"])] for v in validation["validation_errors"]
    ]
    fields = data(page, "#validation-table tbody tr", "validation")
    assert "POST /api/items/ body.price missing" in fields
    server = demo.get("server-errors", **bounds)["server_errors"]
    assert data(page, "#server-errors details", "error") == [e["id"] for e in server]
    assert data(page, "#server-errors details strong", "value") == [str(e["count"]) for e in server]
    # the traceback opens on a click, readable
    first = page.locator("#server-errors details").first
    assert not page.locator("#server-errors pre.traceback").first.is_visible()
    first.locator("summary").click()
    traceback = first.locator("pre.traceback")
    assert traceback.is_visible()
    assert "RuntimeError: the database is on fire" in traceback.inner_text()
    assert traceback.locator(".frame").count() >= 1


# -- filters and the time-range picker --------------------------------------------------------------


def test_the_range_picker_changes_the_window_and_the_numbers(page: Page, demo: Demo) -> None:
    open_page(page, url_of(demo, "traffic"))
    one_hour = int(page.get_attribute('[data-kpi="requests"]', "data-value") or 0)
    for key, seconds in (
        ("15m", 900),
        ("6h", 6 * 3600),
        ("24h", 86400),
        ("30d", 30 * 86400),
        ("13mo", 395 * 86400),
    ):
        page.click(f'.ranges a[data-range="{key}"]')
        page.wait_for_load_state("networkidle")
        assert parse_qs(urlsplit(page.url).query)["range"] == [key]
        assert page.locator(f'.ranges a[data-range="{key}"].active').count() == 1
        bounds = window(page)
        api = demo.get("overview", **bounds)
        assert page.get_attribute('[data-kpi="requests"]', "data-value") == str(api["requests"])
        assert page.get_attribute('[data-kpi="requests_per_minute"]', "data-value") == as_text(
            api["requests_per_minute"]
        )
        since, until = (re.sub(r"\.\d+Z$", "Z", bounds[k]) for k in ("since", "until"))
        assert since < until
        if key == "15m":  # the hour of history is mostly older than 15 minutes
            assert api["requests"] < one_hour
        else:
            assert api["requests"] >= one_hour
        assert _span_seconds(bounds) == pytest.approx(seconds, abs=1)


def _span_seconds(bounds: dict[str, str]) -> float:
    from datetime import datetime

    since, until = (datetime.fromisoformat(bounds[k].replace("Z", "+00:00")) for k in ("since", "until"))
    return (until - since).total_seconds()


def test_filters_by_endpoint_consumer_and_group(page: Page, demo: Demo) -> None:
    open_page(page, url_of(demo, "traffic"))
    total = int(page.get_attribute('[data-kpi="requests"]', "data-value") or 0)
    page.select_option('select[name="endpoint"]', "POST /api/items/")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert parse_qs(urlsplit(page.url).query)["endpoint"] == ["POST /api/items/"]
    filtered = demo.get("overview", **window(page), method="POST", path="/api/items/")
    shown = int(page.get_attribute('[data-kpi="requests"]', "data-value") or 0)
    assert shown == filtered["requests"] and 0 < shown < total
    page.fill('input[name="consumer"]', "ios-app")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    both = demo.get("overview", **window(page), method="POST", path="/api/items/", consumer="ios-app")
    assert page.get_attribute('[data-kpi="requests"]', "data-value") == str(both["requests"])
    assert 0 < both["requests"] < shown
    # the filters go with the view to the other pages
    page.click('[data-nav="consumers"]')
    page.wait_for_load_state("networkidle")
    assert data(page, "#consumers-table tbody tr", "consumer") == ["ios-app"]
    page.click("a:text-is('Clear')")
    page.wait_for_load_state("networkidle")
    page.select_option('select[name="group"]', "Mobile")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    members = data(page, "#consumers-table tbody tr", "consumer")
    assert sorted(members) == ["android-app", "ios-app"]
    mobile = demo.get("consumers", **window(page), group="Mobile", sort="last_seen")["consumers"]
    assert members == [c["identifier"] for c in mobile]


def test_the_request_log_filters_and_pages(page: Page, demo: Demo) -> None:
    open_page(page, url_of(demo, "requests") + "?status=4xx")
    bounds = window(page)
    log = demo.get("requests", **bounds, status="4xx", limit=50)
    shown = data(page, "#requests-table tbody tr", "request")
    assert shown == [i["uuid"] for i in log["items"]] and len(shown) == 50
    statuses = page.eval_on_selector_all(
        "#requests-table tbody tr .status", "ss => ss.map(s => s.textContent)"
    )
    assert all(s.startswith("4") for s in statuses)
    page.click('[data-pager="next"]')
    page.wait_for_load_state("networkidle")
    more = data(page, "#requests-table tbody tr", "request")
    assert more and not set(more) & set(shown)
    second = demo.get("requests", **bounds, status="4xx", limit=50, cursor=log["next_cursor"])
    assert more == [i["uuid"] for i in second["items"]]
    page.fill('input[name="q"]', "limit=ten")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    urls = page.eval_on_selector_all("#requests-table tbody tr td.path a", "as => as.map(a => a.textContent)")
    assert urls and all("limit=ten" in u for u in urls)


def test_the_request_log_item_shows_masked_headers_bodies_logs_and_spans(page: Page, demo: Demo) -> None:
    item = demo.get(
        "requests", since="1h", consumer="ak_live_acme_7f3a", method="GET", path="/api/items/", limit=1
    )
    [entry] = item["items"]
    open_page(page, f"{demo.url}{demo.app_path}/requests/{entry['uuid']}")
    key = page.locator('#request-headers tr[data-header="x-api-key"]')
    assert key.locator("td").nth(1).inner_text().startswith("******")
    assert key.locator(".badge.masked").is_visible()
    assert "ak_live_acme_7f3a" not in page.locator("#request-headers").inner_text()
    body = page.locator("#response-body")
    assert body.get_attribute("data-kind") == "json"
    assert '"name": "Item 1"' in body.inner_text()  # base64-decoded, pretty-printed
    assert "Listed" in page.locator("#log-records").inner_text()
    assert page.locator("#waterfall rect.span").count() >= 3  # the server span and its children
    assert "db.query items" in (page.locator("#waterfall").text_content() or "")


def test_the_apdex_threshold_is_set_on_the_page(page: Page, demo: Demo) -> None:
    open_page(page, url_of(demo, "endpoints"))
    page.fill('#apdex-settings input[name="apdex_ms"]', "20")
    page.click("#apdex-settings button[type=submit]")
    page.wait_for_load_state("networkidle")
    try:
        assert "now 20 ms" in page.locator("#saved").inner_text()
        assert demo.get("settings")["settings"]["apdex_ms"] == 20
        api = demo.get("endpoints", **window(page), include_idle="true")["endpoints"]
        rows = cells(page, "#endpoints-table tbody tr")
        assert [row[8] for row in rows] == [as_text(e["apdex"]) for e in api]
    finally:
        page.fill('#apdex-settings input[name="apdex_ms"]', "500")
        page.click("#apdex-settings button[type=submit]")
        page.wait_for_load_state("networkidle")
    assert demo.get("settings")["settings"]["apdex_ms"] == 500


# -- without JavaScript, and the login ---------------------------------------------------------------


def test_tables_work_without_javascript(browser: Browser, demo: Demo) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        log_in_without_js(context.new_page(), demo)
        page = context.new_page()
        open_page(page, url_of(demo, "endpoints"))
        assert page.locator("#endpoints-table tbody tr").count() >= 7
        open_page(page, url_of(demo, "traffic"))
        assert "needs JavaScript" in page.locator("[data-chart]").first.inner_text()
        assert page.locator("#traffic-table tbody tr").count() > 0
    finally:
        context.close()


def log_in_without_js(page: Page, demo: Demo) -> None:
    page.goto(f"{demo.url}/login")
    page.fill("#token", TOKEN)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{demo.url}/")


def test_login_guards_every_page(browser: Browser, demo: Demo) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        target = url_of(demo, "endpoints") + "?range=6h"
        page.goto(target)
        assert urlsplit(page.url).path == "/login"  # no cookie: sent to the login form
        assert parse_qs(urlsplit(page.url).query)["next"] == [demo.app_path + "/endpoints?range=6h"]
        assert page.locator("#endpoints-table").count() == 0  # nothing of the hub's data
        page.fill("#token", "not-the-token-0123456789")
        page.click("#login-form button[type=submit]")
        assert "not a token of this hub" in page.locator("#login-error").inner_text()
        page.fill("#token", TOKEN)
        page.click("#login-form button[type=submit]")
        page.wait_for_url(target)
        assert page.locator("#endpoints-table").is_visible()
        [cookie] = [c for c in context.cookies() if c["name"] == "apitally_hub_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
        assert page.evaluate("document.cookie").find("apitally_hub_session") == -1  # not readable by scripts
        page.click(".topbar button:text-is('Log out')")
        page.wait_for_url(f"{demo.url}/login")
        page.goto(target)
        assert urlsplit(page.url).path == "/login"
    finally:
        context.close()


def test_a_second_login_in_a_fresh_context_works(browser: Browser, demo: Demo) -> None:
    context = browser.new_context()
    try:
        log_in(context, demo.url)
        page = context.new_page()
        open_page(page, url_of(demo, "instances"))
        assert page.locator("#instances-table tbody tr").count() == 2  # the history's and the demo app's
        states = data(page, "#uptime-timeline rect", "state")
        assert "up" in states and "down" in states  # the quiet spell of the history
        uptime = demo.get("uptime", **window(page))
        assert states == ["unknown"] + [s["status"] for s in uptime["timeline"]]  # grey before the history
    finally:
        context.close()


def test_live_refresh_reloads_the_content_of_pages_that_end_now(page: Page, demo: Demo) -> None:
    page.clock.install()  # the page's timers run on a clock the test moves
    open_page(page, url_of(demo, "traffic"))
    assert page.locator("label.live").is_visible() and page.is_checked("#live-toggle")
    page.evaluate("document.querySelector('#kpis').dataset.marker = 'before'")
    with page.expect_response(lambda r: r.request.headers.get("x-dashboard-refresh") == "1") as refresh:
        page.clock.run_for(31_000)
    assert refresh.value.status == 200
    page.wait_for_function("!document.querySelector('#kpis').dataset.marker")  # the content was replaced
    assert page.locator("[data-chart] .uplot canvas").count() == page.locator("[data-chart]").count()
    # a custom window does not end now: no refresh
    page.goto(url_of(demo, "traffic") + "?since=2h&until=1h")
    assert page.get_attribute("body", "data-live") is None
