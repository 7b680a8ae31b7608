"""``APITALLY_OTLP_METRICS=true`` without the ``[otlp]`` extra: one log line naming the extra, and
everything else works (the app serves, the hub counts every request)."""

from __future__ import annotations

import uuid
from collections import Counter

from apitally_hub import HubServer
from tests.support.delivery import Key, app_env, hub_totals, running, traffic
from tests.support.servers import AppProcess


def test_otlp_metrics_without_the_extra_is_one_line_and_the_hub_sync_works() -> None:
    client_id = str(uuid.uuid4())
    served: Counter[Key] = Counter()
    with HubServer() as hub:
        env = app_env(client_id, hub.url, APITALLY_OTLP_METRICS="true")
        with running(AppProcess("tests.support.apps.no_otlp_app:app", env)) as app:
            traffic(app.url, 15, served)
            output = app.stop()
        counted = hub_totals(hub, client_id)
    assert counted == served, output
    assert output.count("pip install 'apitally-otel[otlp]'") == 1, output
    assert "Traceback" not in output, output
