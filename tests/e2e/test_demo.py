"""``apitally-otel demo``: the demo app in a subprocess, a real hub, exact counts in the report."""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import uuid
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import pytest

from apitally_hub.cli import main
from apitally_hub.demo import run as demo_run
from apitally_hub.demo.consumers import API_KEYS, CLIENT_APPS


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["demo", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def leftovers() -> list[str]:
    return [name for name in os.listdir(tempfile.gettempdir()) if name.startswith("apitally-demo-")]


def test_json_report_counts_exactly_what_was_sent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--duration", "3", "--json")
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    assert report["env"] == "demo"
    sent = report["demo"]["sent"]  # the traffic generator's own ledger
    assert report["demo"]["match"] is True and report["demo"]["differences"] == []
    assert report["demo"]["database"] is None
    assert sent["failures"] == []

    # Per endpoint and status code, the hub counted exactly what was sent.
    def by_endpoint(endpoints: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
        return {(e["method"], e["path"]): (e["requests"], e["status_codes"]) for e in endpoints}

    assert by_endpoint(report["endpoints"]) == by_endpoint(sent["endpoints"])
    assert sum(e["requests"] for e in report["endpoints"]) == sent["counted_requests"] > 50
    statuses = {status for e in report["endpoints"] for status in e["status_codes"]}
    assert {"200", "201", "401", "404", "422", "500"} <= statuses
    # Unknown URLs were sent but are not counted (by design).
    assert sent["uncounted"] and all(u["status_code"] == 404 for u in sent["uncounted"])
    assert sent["requests"] == sent["counted_requests"] + sum(u["requests"] for u in sent["uncounted"])
    assert not {u["url"] for u in sent["uncounted"]} & {e["path"] for e in report["endpoints"]}

    # Validation errors in query, path and body; the server error with its traceback.
    locations = {(v["path"], v["loc"][0]) for v in report["validation_errors"]}
    assert {("/api/items/", "query"), ("/api/items/{item_id}", "path"), ("/api/items/", "body")} <= locations
    assert ("/api/items/", ("body", "price"), "missing") in {
        (v["path"], tuple(v["loc"]), v["type"]) for v in report["validation_errors"]
    }
    [server_error] = report["server_errors"]
    assert (server_error["method"], server_error["path"]) == ("GET", "/api/fail")
    assert (server_error["type"], server_error["msg"]) == ("builtins.RuntimeError", "the database is on fire")
    assert server_error["traceback"].startswith("Traceback") and "demo/app.py" in server_error["traceback"]
    assert server_error["count"] == by_endpoint(sent["endpoints"])[("GET", "/api/fail")][1]["500"]

    # Consumers with names and groups, from set_consumer (X-Api-Key) and the callback (X-Consumer).
    consumers = {c["identifier"]: c for c in report["consumers"]}
    assert {c: consumers[c]["requests"] for c in consumers} == sent["consumers"]
    known = {**API_KEYS, **CLIENT_APPS}
    for identifier, consumer in consumers.items():
        assert (consumer["name"], consumer["group"]) == known[identifier]
    assert {"ak_live_acme_7f3a", "ak_live_globex_91c2", "ios-app"} <= set(consumers)

    [instance] = report["instances"]
    assert instance["versions"]["app"] == "1.0.0" and "fastapi" in instance["versions"]
    assert "exact match" in err and "requests sent" in err
    assert "dashboard: http://127.0.0.1:" in err and f"/apps/{report['client_id']}/demo" in err
    assert leftovers() == []


def test_text_report_and_kept_database(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "kept" / "demo.sqlite"
    code, out, err = run(capsys, "--duration", "1", "--db", str(db))
    assert code == 0, err
    assert out.startswith("Apitally hub report ")
    for section in ("Endpoints", "Consumers", "Validation errors", "Server errors", "Instances"):
        assert f"\n{section}\n" in out
    assert "Acme Corp" in out and "/api/items/{item_id}" in out
    assert f"database: {db.resolve()}" in out
    summary = out.rstrip().splitlines()[-1]
    assert summary.startswith("sent ") and ": exact match" in summary
    assert db.stat().st_size > 0
    assert leftovers() == []


def test_without_fastapi_says_how_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "fastapi" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    code, out, err = run(capsys, "--duration", "1")
    assert code == 2 and out == ""
    assert "needs FastAPI" in err and "missing: fastapi" in err
    assert "pip install 'apitally-otel[hub,fastapi]'" in err


def test_app_that_does_not_start_is_reported(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_run, "APP_TARGET", "apitally_hub.demo.missing:app")
    code, out, err = run(capsys, "--duration", "1")
    assert code == 1 and out == ""
    assert "error: the demo app exited with code" in err and "apitally_hub.demo.missing" in err
    assert leftovers() == []


def test_duration_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--duration", "0"])
    assert exit_info.value.code == 2
    assert "--duration" in capsys.readouterr().err


def test_without_the_hub_extra_every_command_says_how_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "uvicorn" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for argv in (["hub", "--port", "0"], ["report", "--client-id", str(uuid.uuid4())], ["demo"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        [line] = captured.err.splitlines()
        assert "pip install 'apitally-otel[hub]'" in line and argv[0] in line


def test_serve_keeps_the_hub_and_the_app_running_until_stopped(tmp_path: Path) -> None:
    """``demo --serve``: the dashboard answers on live data until SIGTERM (or Ctrl+C), then
    everything stops cleanly."""
    import signal
    import subprocess
    import sys
    import time

    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith(("APITALLY_", "OTEL_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "apitally_hub.cli", "demo", "--serve", "--duration", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        line = ""
        deadline = time.monotonic() + 60
        while "The dashboard: " not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line or process.poll() is None, process.stderr.read() if process.stderr else ""
        url = line.split("The dashboard: ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and "/apps/" in url and url.endswith("/demo")
        first = httpx.get(url, timeout=10)
        assert first.status_code == 200 and 'data-kpi="requests"' in first.text

        def requests_shown() -> int:
            page = httpx.get(url, params={"range": "15m"}, timeout=10).text
            return int(page.split('data-kpi="requests" data-value="', 1)[1].split('"', 1)[0])

        before = requests_shown()
        deadline = time.monotonic() + 30  # the background traffic goes on
        while requests_shown() <= before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert requests_shown() > before
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert "stopping" in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert leftovers() == []
