"""One request-log line made readable (pure functions): bodies decoded from base64 and
pretty-printed when they are JSON, masked headers marked, custom attributes in rows, spans laid
out as a waterfall.

Nothing here escapes HTML: the templates do, for every value (a body is shown as text, never
interpreted).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

SENTINELS = ("<body too large>", "<masked>")
"""Bodies the client replaced (hub-protocol §5), shown as notes."""
MASK = "******"
PREVIEW_BYTES = 512


def decode_body(encoded: Any, headers: list[Any] | None = None) -> dict[str, Any] | None:
    """``{"kind": "json" | "text" | "binary" | "note" | "invalid", "text": ..., "size": n}``."""
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return {"kind": "invalid", "text": encoded[:PREVIEW_BYTES], "size": len(encoded)}
    size = len(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"kind": "binary", "text": raw[:PREVIEW_BYTES].hex(" "), "size": size}
    if text in SENTINELS:
        return {"kind": "note", "text": text, "size": size}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"kind": "text", "text": text, "size": size}
    return {"kind": "json", "text": json.dumps(parsed, indent=2, ensure_ascii=False), "size": size}


def header_rows(headers: Any) -> list[dict[str, Any]]:
    rows = []
    for pair in headers if isinstance(headers, list) else []:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            name, value = str(pair[0]), str(pair[1])
            rows.append({"name": name, "value": value, "masked": value == MASK})
    return rows


MAX_SPANS = 500


def _start_key(span: dict[str, Any]) -> tuple[int, str]:
    return span["start_time"], str(span.get("name"))


def _row(span: dict[str, Any], depth: int, start: int, extent: int) -> dict[str, Any]:
    duration = max(span["end_time"] - span["start_time"], 0)
    attributes = span.get("attributes")
    return {
        "name": str(span.get("name", "")),
        "kind": str(span.get("kind", "")),
        "status": str(span.get("status", "")),
        "depth": min(depth, 12),
        "offset": (span["start_time"] - start) / extent,
        "width": duration / extent,
        "start_ms": (span["start_time"] - start) / 1e6,
        "duration_ms": duration / 1e6,
        "attributes": attributes if isinstance(attributes, dict) else {},
        "span_id": str(span.get("span_id", "")),
    }


def waterfall(spans: Any) -> dict[str, Any] | None:
    """Spans in tree order (parents before children, siblings by start) with their offset and
    width as fractions of the trace's extent."""
    items = [s for s in spans if isinstance(s, dict)] if isinstance(spans, list) else []
    timed = [s for s in items if isinstance(s.get("start_time"), int) and isinstance(s.get("end_time"), int)]
    if not timed:
        return None
    start = min(s["start_time"] for s in timed)
    end = max(max(s["end_time"], s["start_time"]) for s in timed)
    extent = max(end - start, 1)
    ids = {s.get("span_id") for s in timed}
    children: dict[Any, list[dict[str, Any]]] = {}
    for span in timed:
        parent = span.get("parent_span_id")
        children.setdefault(parent if parent in ids else None, []).append(span)
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    roots = sorted(children.get(None, []), key=_start_key, reverse=True)
    stack: list[tuple[dict[str, Any], int]] = [(span, 0) for span in roots]
    while len(rows) < MAX_SPANS:
        if not stack:  # spans in a parent cycle are reachable from no root: list them at the end
            rest = [s for s in timed if id(s) not in seen]
            if not rest:
                break
            stack.append((min(rest, key=_start_key), 0))
        span, depth = stack.pop()
        if id(span) in seen:
            continue
        seen.add(id(span))
        rows.append(_row(span, depth, start, extent))
        kids = children.get(span.get("span_id"), []) if span.get("span_id") is not None else []
        stack += [(kid, depth + 1) for kid in sorted(kids, key=_start_key, reverse=True)]
    return {"rows": rows, "total_ms": extent / 1e6, "count": len(timed)}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def attribute_rows(attributes: Any) -> list[dict[str, str]]:
    """The custom attributes (``request.attributes``) as ``{"key", "value"}`` rows, by key."""
    return [{"key": str(key), "value": str(value)} for key, value in sorted(_dict(attributes).items())]


def present_item(item: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = _dict(item.get("request"))
    response: dict[str, Any] = _dict(item.get("response"))
    logs: list[Any] = item["logs"] if isinstance(item.get("logs"), list) else []
    exception = item["exception"] if isinstance(item.get("exception"), dict) else None
    started = request.get("timestamp")
    return {
        "request": request,
        "response": response,
        "attributes": attribute_rows(request.get("attributes")),
        "request_headers": header_rows(request.get("headers")),
        "response_headers": header_rows(response.get("headers")),
        "request_body": decode_body(request.get("body")),
        "response_body": decode_body(response.get("body")),
        "exception": exception,
        "logs": [
            {
                **record,
                "offset_ms": (record["timestamp"] - started) * 1000
                if isinstance(record.get("timestamp"), int | float) and isinstance(started, int | float)
                else None,
            }
            for record in logs
            if isinstance(record, dict)
        ],
        "waterfall": waterfall(item.get("spans")),
        "trace_id": item.get("trace_id"),
    }
