"""``/apps/{client_id}/{env}``, an app env's home: requests per minute stacked by status class,
error rate, response times and bytes in and out over the window, with their totals."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.query.service import QueryService
from apitally_hub.web.dashboard.pages.common import (
    chart,
    chrome,
    per_minute,
    percentiles_chart,
    requests_chart,
)
from apitally_hub.web.dashboard.site import Dashboard, env_switch


async def traffic(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "traffic")) is not None:
        return redirect
    assert view.app is not None
    app, window, flt = view.app, view.window, view.filter

    def data(q: QueryService) -> dict[str, Any]:
        overview = q.app_overview(app, window, flt=flt)
        series = q.timeseries(app, window, flt=flt, bucket_seconds=view.bucket, percentiles=False)
        times = q.percentiles(app, window, flt=flt, bucket_seconds=view.percentile_bucket)
        rate = per_minute(int(series["bucket_seconds"]))
        return {
            **chrome(q, view),
            "overview": overview,
            "span_counted": q.span_counted_instances(app),
            "series": series,
            "charts": {
                "requests": requests_chart(series, view),
                "errors": chart(
                    series, view, [("error rate", lambda p: p["error_rate"])], unit="%", missing=None
                ),
                "times": percentiles_chart(times, view),
                "bytes": chart(
                    series,
                    view,
                    [
                        ("in", rate(lambda p: p["request_bytes"])),
                        ("out", rate(lambda p: p["response_bytes"])),
                    ],
                    unit="bytes",
                ),
            },
        }

    return await dash.render(request, "traffic.html", data, view=view, active="traffic", page_title="Traffic")


def routes(dash: Dashboard) -> list[Route]:
    return [dash.page("/apps/{client_id}/{env}", traffic, name="traffic")]
