"""How ``schema_v1.sqlite`` and ``schema_v1.json`` were made: with the hub at commit 481a27a (schema
version 1, the last before the ingest queue and the rollups), for the migration test. Kept for
the record; it ran from the repository root with that commit checked out, and later hubs would
write a newer schema.
"""

from __future__ import annotations

import datetime
import json
import sys

import httpx

sys.path.insert(0, "tests/hub")
from hub_samples import CONSUMER_ITEM, REQUEST_ITEM, gzip_lines, log_line, startup, sync

from apitally_hub import HubServer

T0 = 1_795_000_000.0
CLIENT_ID = "5b0f3f7e-9a55-4c55-8d3c-2d1c1f3e7a01"
INSTANCES = ("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222")
FAILED = {
    **REQUEST_ITEM,
    "consumer": None,
    "status_code": 500,
    "request_count": 2,
    "response_times": {"250": 2},
    "request_sizes": {},
    "response_sizes": {"0": 2},
    "request_size_sum": 0,
    "response_size_sum": 40,
}


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()


def main() -> None:
    with HubServer("tests/hub/data/schema_v1.sqlite", clock=lambda: T0 + 3600, retention_days=3650) as hub:
        base = hub.hub_url(CLIENT_ID, "prod")
        with httpx.Client() as http:
            for instance in INSTANCES:
                assert http.post(base + "/startup", json=startup(instance)).status_code == 202
            k = 0
            for minute in range(3):
                for instance in INSTANCES:
                    k += 1
                    named = dict(CONSUMER_ITEM, name=f"Acme {minute}") if minute else CONSUMER_ITEM
                    message = sync(
                        instance_uuid=instance,
                        timestamp=T0 + minute * 60 + k,
                        requests=[REQUEST_ITEM, FAILED],
                        consumers=[named],
                    )
                    assert http.post(base + "/sync", json=message).status_code == 202
                    assert http.post(base + "/sync", json=message).status_code == 200  # a resend
            lines = gzip_lines([log_line(timestamp=T0 + i) for i in range(5)])
            file_uuid = "33333333-3333-4333-8333-333333333333"
            assert http.post(base + f"/log?uuid={file_uuid}", content=lines).status_code == 202
        expected = {}
        for resource in (
            "endpoints",
            "consumers",
            "validation-errors",
            "server-errors",
            "requests",
            "instances",
        ):
            params = {} if resource == "instances" else {"since": iso(T0 - 60), "until": iso(T0 + 600)}
            expected[resource] = hub.query(CLIENT_ID, "prod", resource, **params)
    with open("tests/hub/data/schema_v1.json", "w") as out:
        json.dump({"client_id": CLIENT_ID, "t0": T0, "expected": expected}, out, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
