"""The ``hub`` subcommand as a real process, and the subcommand registry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import apitally_otel
from apitally_hub.cli import build_parser, main
from apitally_hub.storage.sqlite.schema import SCHEMA_VERSION
from tests.support.hub_samples import new_uuid, sync

SRC = Path(apitally_otel.__file__).resolve().parents[1]


def test_parser_registers_hub_and_report() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["hub", "--port", "0", "--client-id", new_uuid().upper(), "--client-id", new_uuid()]
    )
    assert args.command == "hub" and args.port == 0 and len(args.client_id) == 2
    assert args.client_id[0] == args.client_id[0].lower()
    args = parser.parse_args(["report", "--client-id", new_uuid()])
    assert (args.env, args.since, args.json, args.hub) == ("dev", "1h", False, "http://127.0.0.1:8250")


@pytest.mark.parametrize(
    "argv",
    [["hub", "--client-id", "nope"], ["hub", "--retention-days", "0"], ["report"], []],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    capsys.readouterr()


def test_hub_process_starts_fast_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    db = tmp_path / "data" / "hub.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apitally_hub.cli",
            "hub",
            "--port",
            "0",
            "--db",
            str(db),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in first, (
            first + process.stderr.read() if process.stderr else ""
        )
        assert str(db) in second
        url = first.split("listening on ", 1)[1].split()[0]
        with httpx.Client(base_url=url, timeout=5) as http:
            while True:  # the URL is printed before uvicorn accepts; wait briefly for readiness
                try:
                    if http.get("/health").json()["status"] == "ok":
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() - started < 2.0, "the hub took more than 2 s to start"
                time.sleep(0.02)
            elapsed = time.monotonic() - started
            assert http.post(f"/v2/{new_uuid()}/dev/sync", json=sync()).status_code == 202
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert elapsed < 2.0
    assert db.exists()


def test_hub_migrate_brings_a_store_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "new.sqlite"
    assert main(["hub", "migrate", "--db", str(db)]) == 0
    assert f"{db}: schema version {SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(["hub", "migrate", "--db", str(db)]) == 0  # nothing left to do: still fine
    assert main(["hub", "migrate", "--db", str(tmp_path / "missing-dir" / "x" / "\0bad")]) == 1
    assert "error: cannot migrate" in capsys.readouterr().err
