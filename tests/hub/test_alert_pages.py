"""The alert page of an app env: active alerts, rules, silences and history, escaped."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.support.alerting_helpers import driven_hub, traffic


def test_alert_page_shows_rules_alerts_silences_and_history(tmp_path: Path) -> None:
    client_id = str(uuid.uuid4())
    with driven_hub(tmp_path / "hub.sqlite", client_id) as hub:
        rule = {"metric": "server_errors", "condition": ">", "threshold": 0, "window_minutes": 1}
        hub.post("alert-rules", {"name": "<script>alert(1)</script>", **rule})
        hub.post("alert-rules", {"name": "quiet", **rule, "threshold": 1000})
        hub.post("silences", {"minutes": 5, "comment": "deploy window"})
        hub.sync(traffic(status=500, count=4))
        hub.evaluate()
        page = hub.http.get(f"/apps/{client_id}/prod/alerts")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        active = html.split('id="active-alerts"')[1].split("</table>")[0]
        assert 'class="firing">firing' in active and "quiet" not in active and "silenced" in active
        assert "quiet" in html.split('id="rules"')[1] and "deploy window" in html
        assert 'normal</span> → <span class="firing">firing' in html.split('id="history"')[1]
        assert hub.http.get("/apps/not-a-uuid/prod/alerts").status_code == 404
