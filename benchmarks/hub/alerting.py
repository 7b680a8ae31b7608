"""Alert evaluation cost per rule, against the cost of the queries it makes (same run, interleaved).

A SQLite store holds an hour of per-minute traffic for one app (``--endpoints`` endpoints, a few
status codes, some consumers); ``--rules`` rules of a realistic mix (counts, error rate, p95 per
endpoint, Apdex, a consumer-group rule, uptime) are evaluated round after round by the real
:class:`~apitally_hub.alerting.evaluator.Evaluator` (observe through the query layer, the pure
state machine, one fenced commit per rule). The baseline is the observation alone (the
QueryService calls a rule makes), so the ratio is what evaluating and persisting add to the
query.

    python -m benchmarks.hub.alerting [--quick] [--endpoints 50] [--rules 40] [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from apitally_hub.alerting.config import AlertingConfig
from apitally_hub.alerting.evaluator import Evaluator
from apitally_hub.alerting.model import rule_from_record
from apitally_hub.alerting.observe import observe
from apitally_hub.alerting.validation import parse_rule
from apitally_hub.config import Retention
from apitally_hub.ingest import folding
from apitally_hub.ingest.worker import FoldingWorker
from apitally_hub.query.service import QueryService
from apitally_hub.storage.alert_records import RuleRecord
from apitally_hub.storage.records import AppKey, RawMessage
from apitally_hub.storage.sqlite.store import SQLiteStorage
from benchmarks import common

APP = AppKey(str(uuid.uuid4()), "prod")
RULE_MIX: list[dict[str, Any]] = [
    {"metric": "server_errors", "condition": ">", "threshold": 0},
    {"metric": "error_rate", "condition": ">", "threshold": 0.05, "window_minutes": 15},
    {"metric": "response_time_p95", "condition": ">", "threshold": 200, "scope": {"for_each": "endpoint"}},
    {"metric": "apdex", "condition": "<", "threshold": 0.9, "window_minutes": 30},
    {"metric": "requests", "condition": "<", "threshold": 1, "scope": {"consumer_group": "Enterprise"}},
    {"metric": "validation_errors", "condition": ">", "threshold": 10, "scope": {"path_pattern": "/api/r1*"}},
    {"metric": "uptime", "condition": "<", "threshold": 1},
    {
        "metric": "client_errors",
        "condition": ">",
        "threshold": 50,
        "window_minutes": 60,
        "scope": {"for_each": "endpoint"},
    },
]


def _sync(now: float, minute: int, endpoints: int, instance: str) -> dict[str, Any]:
    requests = []
    for i in range(endpoints):
        for status, share in ((200, 20), (404, 2), (500, 1)):
            requests.append(
                {
                    "consumer": f"c{i % 7}" if i % 2 else None,
                    "method": "GET",
                    "path": f"/api/r{i}/{{id}}",
                    "status_code": status,
                    "request_count": share,
                    "request_size_sum": 0,
                    "response_size_sum": 0,
                    "response_times": {"0": share // 2, "120": share - share // 2},
                    "request_sizes": {},
                    "response_sizes": {},
                }
            )
    return {
        "instance_uuid": instance,
        "message_uuid": str(uuid.uuid4()),
        "timestamp": now - (60 - minute) * 60,
        "requests": requests,
        "validation_errors": [
            {
                "consumer": None,
                "method": "GET",
                "path": "/api/r1/{id}",
                "loc": ["query", "x"],
                "msg": "bad",
                "type": "int_parsing",
                "error_count": 1,
            }
        ],
        "server_errors": [],
        "consumers": [
            {"identifier": f"c{i}", "name": None, "group": "Enterprise" if i < 3 else None} for i in range(7)
        ],
        "resources": {},
    }


def _store(directory: Path, endpoints: int, now: float) -> SQLiteStorage:
    store = SQLiteStorage(directory / "hub.sqlite")
    store.open()
    instance = str(uuid.uuid4())
    for minute in range(61):
        message = _sync(now, minute, endpoints, instance)
        body = folding.encode_json_body(json.dumps(message).encode())
        store.enqueue(
            RawMessage(
                APP,
                "sync",
                message["message_uuid"],
                instance,
                message["timestamp"],
                body,
                "zlib",
                folding.item_count(message),
            )
        )
    FoldingWorker(store).drain(timeout=120)
    return store


def run(quick: bool = False, endpoints: int = 50, rules: int = 40, rounds: int = 10) -> dict[str, Any]:
    if quick:
        endpoints, rules, rounds = 5, 8, 2
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="apitally-bench-alerting-") as tmp:
        store = _store(Path(tmp), endpoints, now)
        try:
            for index in range(rules):
                body = {"name": f"r{index}", "window_minutes": 5, **RULE_MIX[index % len(RULE_MIX)]}
                parsed = parse_rule(body)
                store.alerts.put_rule(
                    RuleRecord(str(uuid.uuid4()), APP, parsed["name"], parsed["spec"], True, "api", now, now)
                )
            settings = AlertingConfig(interval=60, max_pending_per_channel=10)
            queries = QueryService(store, Retention().by_resolution, clock=time.time)
            evaluator = Evaluator(lambda: queries, settings)
            records = [rule_from_record(r) for r in store.alerts.rules()]
            evaluate_ms, observe_ms = [], []
            evaluator.evaluate_all()  # warm-up (first instances written)
            for _ in range(rounds):  # interleaved: a full round, then the same observations alone
                started = time.perf_counter()
                assert evaluator.evaluate_all()
                evaluate_ms.append((time.perf_counter() - started) * 1000 / len(records))
                started = time.perf_counter()
                for rule in records:
                    observe(queries, rule, time.time())
                observe_ms.append((time.perf_counter() - started) * 1000 / len(records))
            instances = sum(len(store.alerts.instances(r.id)) for r in records)
        finally:
            store.close()
    evaluate, baseline = common.median(evaluate_ms), common.median(observe_ms)
    common.log(f"alerting: {evaluate:.2f} ms/rule (queries alone {baseline:.2f} ms/rule)")
    return {
        "endpoints": endpoints,
        "rules": rules,
        "rounds": rounds,
        "instances": instances,
        "evaluate_ms_per_rule": round(evaluate, 3),
        "observe_ms_per_rule": round(baseline, 3),
        "ratio": round(evaluate / baseline, 2) if baseline else None,
        "rules_per_second": round(1000 / evaluate) if evaluate else None,
    }


def report(result: dict[str, Any]) -> str:
    rows = [
        ["evaluate (observe + state machine + fenced commit)", f"{result['evaluate_ms_per_rule']:.2f}"],
        ["observe only (the QueryService calls)", f"{result['observe_ms_per_rule']:.2f}"],
    ]
    return (
        f"{result['rules']} rules over {result['endpoints']} endpoints x 60 minutes of traffic, "
        f"{result['instances']} alert instances, median of {result['rounds']} rounds.\n\n"
        + common.table(["per rule", "ms"], rows)
        + f"\n\nRatio evaluate / observe: {result['ratio']}; about {result['rules_per_second']} rules/s"
        " on one core (an evaluation interval of 60 s leaves room for thousands of rules)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--endpoints", type=int, default=50)
    parser.add_argument("--rules", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(report(run(args.quick, args.endpoints, args.rules, args.rounds)))


if __name__ == "__main__":
    main()
