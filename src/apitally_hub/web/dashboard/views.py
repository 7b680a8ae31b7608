"""What a dashboard URL says — the app, the time range, the filters — and links that keep it.

A view is shared by its URL: ``/apps/<client id>/<env>/<page>?range=24h&endpoint=GET+/items``.
Parameters kept from page to page (:data:`SHARED`): ``range`` (a key of :data:`RANGES`) or a
custom ``since``/``until`` (anything the query API takes: ``2h``, an ISO time), and the filters
``endpoint`` (``METHOD /path``), ``consumer`` (an identifier) and ``group``. Each page may take
more (``sort``, ``cursor``, ...), which links to other pages drop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlencode

from starlette.requests import Request

from apitally_hub.errors import HubError
from apitally_hub.query.params import MAX_TEXT, window_params
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import DAY, HOUR, MINUTE, NO_CONSUMER, AppKey, TrafficFilter
from apitally_hub.web.query_api import app_param

RANGES: dict[str, tuple[str, int, int, int]] = {
    "15m": ("15 min", 15 * MINUTE, MINUTE, MINUTE),
    "1h": ("1 h", HOUR, MINUTE, MINUTE),
    "6h": ("6 h", 6 * HOUR, 5 * MINUTE, 30 * MINUTE),
    "24h": ("24 h", DAY, 10 * MINUTE, HOUR),
    "7d": ("7 d", 7 * DAY, HOUR, 6 * HOUR),
    "30d": ("30 d", 30 * DAY, 3 * HOUR, DAY),
    "90d": ("90 d", 90 * DAY, 12 * HOUR, DAY),
    "13mo": ("13 months", 395 * DAY, DAY, 7 * DAY),
}
"""Time ranges of the picker: key -> (label, seconds, chart bucket, percentile chart bucket).
Percentiles need every row's histogram, so their chart takes coarser buckets (hours, days: the
rollups) than the chart of requests; beyond 30 days both read the hourly and daily rollups."""
DEFAULT_RANGE = "1h"
LIVE_MAX_SECONDS = DAY
"""Pages over a window up to this long (ending now) refresh themselves."""

NAV: tuple[tuple[str, str], ...] = (
    ("traffic", "Traffic"),
    ("endpoints", "Endpoints"),
    ("errors", "Errors"),
    ("consumers", "Consumers"),
    ("requests", "Request log"),
    ("instances", "Instances & uptime"),
    ("alerts", "Alerts"),
)
"""The app's navigation: (route name, label); each route takes ``client_id`` and ``env``."""

SHARED = ("range", "since", "until", "endpoint", "consumer", "group")


class BadView(HubError):
    """A URL parameter the dashboard cannot use (an HTML error page with this message)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)
        self.message = message


def _buckets_for(seconds: float) -> tuple[int, int]:
    for _, span, bucket, percentile_bucket in RANGES.values():
        if seconds <= span:
            return bucket, percentile_bucket
    return DAY, 7 * DAY


def parse_endpoint(value: str) -> tuple[str, str]:
    method, _, path = value.strip().partition(" ")
    if not method.isalpha() or len(method) > 16 or not path:
        raise BadView("endpoint should be a method and a path, e.g. GET /api/items")
    return method.upper(), path.strip()


@dataclass
class View:
    request: Request
    now: float
    app: AppKey | None = None
    range: str = DEFAULT_RANGE
    window: Window = field(default_factory=lambda: Window(0.0, 0.0))
    bucket: int = MINUTE
    percentile_bucket: int = MINUTE
    endpoint: tuple[str, str] | None = None
    consumer: str | None = None
    group: str | None = None

    @classmethod
    def parse(cls, request: Request, now: float, *, default_range: str = DEFAULT_RANGE) -> View:
        view = cls(request, now)
        try:
            if "client_id" in request.path_params:
                view.app = app_param(request)
            for name in ("since", "until", "range", "endpoint", "consumer", "group"):
                raw = request.query_params.get(name)
                if raw is not None and len(raw) > MAX_TEXT:
                    raise BadView(f"{name} is longer than {MAX_TEXT} characters")
            if view.param("since"):
                view.range = "custom"
                view.window = window_params(request, now)
                view.bucket, view.percentile_bucket = _buckets_for(view.window.until - view.window.since)
            else:
                view.range = view.param("range") or default_range
                if view.range not in RANGES:
                    raise BadView(f"range should be one of {', '.join(RANGES)}")
                _, span, view.bucket, view.percentile_bucket = RANGES[view.range]
                view.window = Window(now - span, now)
        except BadView:
            raise
        except HubError as exc:  # the query API's parameter errors, said as text
            if exc.status_code != 422:
                raise
            raise BadView(_describe(exc.detail)) from None
        endpoint = view.param("endpoint")
        view.endpoint = parse_endpoint(endpoint) if endpoint else None
        view.consumer = view.param("consumer")
        view.group = view.param("group")
        return view

    def param(self, name: str) -> str | None:
        value = self.request.query_params.get(name)
        return value if value else None

    @property
    def filter(self) -> TrafficFilter:
        method, path = self.endpoint or (None, None)
        consumer = NO_CONSUMER if self.consumer == "-" else self.consumer
        return TrafficFilter(method=method, path=path, consumer=consumer, consumer_group=self.group)

    @property
    def filtered(self) -> bool:
        return bool(self.endpoint or self.consumer or self.group)

    @property
    def live(self) -> bool:
        return self.range != "custom" and RANGES[self.range][1] <= LIVE_MAX_SECONDS

    @property
    def range_label(self) -> str:
        return "custom" if self.range == "custom" else RANGES[self.range][0]

    def shared_params(self) -> dict[str, str]:
        return {name: value for name in SHARED if (value := self.param(name))}

    def here(self, **changes: str | int | None) -> str:
        """This page's URL with ``changes`` to its query (None removes a parameter)."""
        params: dict[str, str] = dict(self.request.query_params)
        return self.request.url.path + _query(params, changes)

    def link(self, name: str, *, keep: bool = True, **query: str | int | None) -> str:
        """The URL of page ``name`` of this app (of the hub when ``name`` takes no app), keeping
        the shared parameters (``keep``) and adding ``query``."""
        path_params = {"client_id": self.app.client_id, "env": self.app.env} if self.app else {}
        path = str(self.request.app.url_path_for("dashboard:" + name, **path_params))
        return path + _query(self.shared_params() if keep else {}, query)

    def csv_link(self, table: str, **query: str | int | None) -> str:
        """The query API's CSV download of ``table`` (a route of :data:`.csv_export.TABLES`) over
        this view's window (as ISO times: the rows shown now) and filters, with ``query`` (the
        page's own parameters: sort, status, ...) added."""
        assert self.app is not None
        path = str(
            self.request.app.url_path_for(
                f"api:/api/{{client_id}}/{{env}}/{table}", client_id=self.app.client_id, env=self.app.env
            )
        )
        method, endpoint_path = self.endpoint or (None, None)
        params: dict[str, str | int | None] = {
            "format": "csv",
            "since": _iso(self.window.since),
            "until": _iso(self.window.until),
            "method": method,
            "path": endpoint_path,
            "consumer": self.consumer,
            "group": self.group,
            **query,
        }
        return path + _query({}, params)

    def with_range(self, key: str) -> str:
        return self.here(range=key, since=None, until=None, cursor=None)


def _query(params: Mapping[str, str], changes: Mapping[str, str | int | None]) -> str:
    merged = dict(params)
    for key, value in changes.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return "?" + urlencode(merged) if merged else ""


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat()


def _describe(detail: object) -> str:
    if isinstance(detail, list):
        parts = []
        for error in detail:
            if isinstance(error, dict):
                loc = error.get("loc") or []
                parts.append(f"{loc[-1] if loc else 'parameter'}: {error.get('msg')}")
        return "; ".join(parts) or "bad parameters"
    return str(detail)
