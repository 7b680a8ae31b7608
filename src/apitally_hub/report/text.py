"""Plain-text rendering of a report document (see :mod:`.report`): aligned tables per section.

Every text that came from a hub (and so from any client that can reach one) goes through
:func:`terminal_safe`: a path or consumer carrying ANSI/OSC escapes must not recolour, retitle or
rewrite the operator's terminal.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

_MAX_CELL = 60

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
"""C0 and C1 controls (ESC, CSI, OSC, BEL, CR, backspace, ...), DEL, and the invisible and
bidirectional formatting characters that can make a line read differently from what it holds."""


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """``text`` with every control or invisible formatting character shown as ``\\xNN`` / ``\\uNNNN``."""
    return _UNSAFE.sub(_escaped, text)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    text = terminal_safe(text.replace("\n", " "))
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; ``numeric`` column indexes are right-aligned."""
    if not rows:
        return "  (none)\n"
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if i in numeric else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  " + "  ".join(parts).rstrip() + "\n"

    return line(headers) + line(["-" * w for w in widths]) + "".join(line(r) for r in cells)


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(epoch: float | None, now: float) -> str:
    if epoch is None:
        return "-"
    seconds = max(0.0, now - epoch)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _ms(value: float | None) -> int | None:
    """A request-log item's ``response_time_ms`` (the query API's field) in whole milliseconds."""
    return None if value is None else round(value)


def render_text(report: dict[str, Any]) -> str:
    now = time.time()
    window = report["window"]
    title = f"{report['client_id']} / {report['env']}  ({report.get('hub', '')})"
    out = [
        f"Apitally hub report  {terminal_safe(title)}\n",
        f"window: {_time(window['since'])} .. {_time(window['until'])}\n\n",
        "Endpoints\n",
        table(
            [
                "method",
                "path",
                "requests",
                "4xx",
                "5xx",
                "error rate",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "req bytes",
                "resp bytes",
            ],
            [
                [
                    e["method"],
                    e["path"],
                    e["requests"],
                    e["client_errors"],
                    e["server_errors"],
                    f"{e['error_rate']:.1%}",
                    e["p50_ms"],
                    e["p95_ms"],
                    e["p99_ms"],
                    e["request_bytes"],
                    e["response_bytes"],
                ]
                for e in report["endpoints"]
            ],
            numeric=range(2, 11),
        ),
        "\nConsumers\n",
        table(
            ["identifier", "name", "group", "requests", "4xx", "5xx"],
            [
                [
                    c["identifier"],
                    c["name"],
                    c["group"],
                    c["requests"],
                    c["client_errors"],
                    c["server_errors"],
                ]
                for c in report["consumers"]
            ],
            numeric=(3, 4, 5),
        ),
        "\nValidation errors\n",
        table(
            ["count", "method", "path", "loc", "type", "msg"],
            [
                [v["count"], v["method"], v["path"], ".".join(v["loc"]), v["type"], v["msg"]]
                for v in report["validation_errors"]
            ],
            numeric=(0,),
        ),
        "\nServer errors\n",
        table(
            ["count", "method", "path", "type", "msg"],
            [[s["count"], s["method"], s["path"], s["type"], s["msg"]] for s in report["server_errors"]],
            numeric=(0,),
        ),
        "\nInstances\n",
        table(
            ["instance", "status", "last sync", "interval s", "client", "versions"],
            [
                [
                    i["instance_uuid"],
                    "online" if i["online"] else "offline",
                    _ago(i["last_sync_at"], now),
                    i["sync_interval"],
                    i["client"],
                    ", ".join(f"{k} {v}" for k, v in sorted(i["versions"].items())),
                ]
                for i in report["instances"]
            ],
            numeric=(3,),
        ),
    ]
    requests = report.get("requests") or []
    if requests:
        out += [
            f"\nRequest log (latest {len(requests)} of {report.get('requests_total', len(requests))})\n",
            table(
                ["time", "method", "path", "status", "ms", "consumer", "url"],
                [
                    [
                        _time(r.get("timestamp")),
                        r.get("method"),
                        r.get("path"),
                        r.get("status_code"),
                        _ms(r.get("response_time_ms")),
                        r.get("consumer") or "",
                        (r.get("url") or "")[:80],
                    ]
                    for r in requests
                ],
                numeric=(3, 4),
            ),
        ]
    return "".join(out)
