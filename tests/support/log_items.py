"""Raw request-log items for the request logger's tests."""

from __future__ import annotations

import json
import time

from apitally_otel._request_log.log_capture import RawLogItem


def item(n: int, body_size: int = 200) -> RawLogItem:
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/items/{n}",
        "query_string": b"",
        "headers": [(b"host", b"h")],
    }
    body = json.dumps({"n": n, "pad": "x" * body_size}).encode()
    return RawLogItem(
        time.time(), "POST", "/items/{id}", scope, status_code=200, response_time=0.01, request_body=body
    )
