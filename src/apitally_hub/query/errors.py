"""Errors: responses 400-599 per endpoint and status code, validation errors and server errors
(grouped, most frequent first)."""

from __future__ import annotations

import json
from typing import Any

from apitally_hub.query.base import ALL_TRAFFIC, QueryBase
from apitally_hub.query.cursors import FIRST_PAGE, Page, next_page_cursor, page_offset
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import AppKey, EventQuery, TrafficFilter


class ErrorQueries(QueryBase):
    def error_status_codes(
        self, app: AppKey, window: Window, *, flt: TrafficFilter = ALL_TRAFFIC
    ) -> list[dict[str, Any]]:
        """Responses 400-599 per (method, path, status code), most frequent first."""
        rows = self._traffic(app, window, group_by=("method", "path", "status_code"), filter=flt)
        errors = [
            {"method": r.key[0], "path": r.key[1], "status_code": int(r.key[2]), "requests": r.request_count}
            for r in rows
            if 400 <= int(r.key[2]) <= 599 and r.request_count
        ]
        errors.sort(key=lambda e: (-e["requests"], e["status_code"], e["path"], e["method"]))
        return errors

    def validation_errors(
        self, app: AppKey, window: Window, *, flt: TrafficFilter = ALL_TRAFFIC, page: Page = FIRST_PAGE
    ) -> dict[str, Any]:
        offset = page_offset(page.cursor)
        rows, total = self.storage.validation_errors(
            EventQuery(app, self._segments(window), self._scoped(app, flt), page.limit, offset)
        )
        return {
            "validation_errors": [
                {
                    "method": r.method,
                    "path": r.path,
                    "loc": json.loads(r.loc),
                    "msg": r.msg,
                    "type": r.type,
                    "count": r.count,
                    "consumers": r.consumers,
                    "first_bucket": r.first_bucket,
                    "last_bucket": r.last_bucket,
                }
                for r in rows
            ],
            "total": total,
            "next_cursor": next_page_cursor(offset, len(rows), total),
        }

    def server_errors(
        self, app: AppKey, window: Window, *, flt: TrafficFilter = ALL_TRAFFIC, page: Page = FIRST_PAGE
    ) -> dict[str, Any]:
        offset = page_offset(page.cursor)
        rows, total = self.storage.server_errors(
            EventQuery(app, self._segments(window), self._scoped(app, flt), page.limit, offset)
        )
        return {
            "server_errors": [
                {
                    "id": r.error_hash,
                    "method": r.method,
                    "path": r.path,
                    "type": r.type,
                    "msg": r.msg,
                    "traceback": r.traceback,
                    "sentry_event_id": r.sentry_event_id,
                    "count": r.count,
                    "consumers": r.consumers,
                    "first_bucket": r.first_bucket,
                    "last_bucket": r.last_bucket,
                }
                for r in rows
            ],
            "total": total,
            "next_cursor": next_page_cursor(offset, len(rows), total),
        }
