"""``/apps/{client_id}/{env}/errors``: 4xx and 5xx responses by status code over time and by
endpoint, validation errors grouped by field and type, server errors with their tracebacks."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.query.cursors import Page
from apitally_hub.query.service import QueryService
from apitally_hub.web.dashboard.pages.common import chart, chrome, per_minute, status_color, status_count
from apitally_hub.web.dashboard.site import Dashboard, env_switch

PAGE_SIZE = 50


async def errors(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "errors")) is not None:
        return redirect
    assert view.app is not None
    app, window, flt = view.app, view.window, view.filter
    validation_cursor, server_cursor = view.param("vcursor"), view.param("scursor")

    def data(q: QueryService) -> dict[str, Any]:
        series = q.timeseries(app, window, flt=flt, bucket_seconds=view.bucket, percentiles=False)
        codes = sorted({int(c) for p in series["points"] for c in p["status_codes"] if int(c) >= 400})
        rate = per_minute(int(series["bucket_seconds"]))
        by_code = [(str(code), rate(status_count(str(code)))) for code in codes]
        spec = chart(series, view, by_code, kind="stacked")
        shades = {4: 0, 5: 0}
        for entry, code in zip(spec["series"], codes, strict=True):
            entry["color"] = status_color(code, shades[code // 100])
            shades[code // 100] += 1
        return {
            **chrome(q, view),
            "series": series,
            "codes": codes,
            "chart_errors": spec,
            "status_codes": q.error_status_codes(app, window, flt=flt),
            "validation": q.validation_errors(app, window, flt=flt, page=Page(PAGE_SIZE, validation_cursor)),
            "server_errors": q.server_errors(app, window, flt=flt, page=Page(PAGE_SIZE, server_cursor)),
        }

    return await dash.render(request, "errors.html", data, view=view, active="errors", page_title="Errors")


def routes(dash: Dashboard) -> list[Route]:
    return [dash.page("/apps/{client_id}/{env}/errors", errors, name="errors")]
