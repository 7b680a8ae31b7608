"""The request log (newest first, keyset-paged), one logged request with its full item, and the
rejections (requests the hub refused at ingest)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from apitally_hub.query.base import QueryBase
from apitally_hub.query.cursors import FIRST_PAGE, Page, decode_cursor, encode_cursor
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import LOG_BODY_SCAN, AppKey, LogQuery, LogSummary


class RequestLogQueries(QueryBase):
    def request_log(self, query: LogQuery, cursor: str | None = None) -> dict[str, Any]:
        before = decode_cursor(cursor, "t", "id")
        limit = query.limit
        query = replace(
            query, limit=limit + 1, before=(float(before["t"]), int(before["id"])) if before else None
        )
        items, total = self.storage.request_log(query)
        shown = items[:limit]
        next_cursor = None
        if len(items) > limit:
            next_cursor = encode_cursor({"t": shown[-1].timestamp, "id": shown[-1].row_id})
        answer: dict[str, Any] = {
            "total": total,
            "limit": limit,
            "items": [_log_summary(i) for i in shown],
            "next_cursor": next_cursor,
        }
        if query.request_body or query.response_body:
            answer["body_search_scanned_at_most"] = LOG_BODY_SCAN
        if query.attribute is not None:
            answer["attribute_search_scanned_at_most"] = LOG_BODY_SCAN
        return answer

    def request_log_item(self, app: AppKey, request_uuid: str) -> dict[str, Any] | None:
        found = self.storage.request_log_item(app, request_uuid)
        if found is None:
            return None
        summary, file_uuid, item = found
        return {**_log_summary(summary), "file_uuid": file_uuid, "item": json.loads(item)}

    def rejections(self, app: AppKey, window: Window, page: Page = FIRST_PAGE) -> dict[str, Any]:
        before = decode_cursor(page.cursor, "t", "id")
        rows = self.storage.rejections(
            app,
            window.since,
            window.until,
            limit=page.limit + 1,
            before=(float(before["t"]), int(before["id"])) if before else None,
        )
        shown = rows[: page.limit]
        next_cursor = None
        if len(rows) > page.limit:
            next_cursor = encode_cursor({"t": shown[-1].received_at, "id": shown[-1].row_id})
        return {
            "rejections": [
                {
                    "received_at": r.received_at,
                    "endpoint": r.endpoint,
                    "status_code": r.status_code,
                    "detail": json.loads(r.detail),
                }
                for r in shown
            ],
            "next_cursor": next_cursor,
        }


def _log_summary(item: LogSummary) -> dict[str, Any]:
    return {
        "uuid": item.request_uuid,
        "timestamp": item.timestamp,
        "method": item.method,
        "path": item.path,
        "url": item.url,
        "status_code": item.status_code,
        "response_time_ms": round(item.response_time * 1000, 3),
        "consumer": item.consumer,
        "request_size": item.request_size,
        "response_size": item.response_size,
        "trace_id": item.trace_id,
        "exception_type": item.exception_type,
    }
