"""Folding off the request path: in a process of its own (as ``apitally-otel hub`` runs it), and the
backpressure that holds back the clients a folding backlog comes from."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from apitally_hub import HubServer
from apitally_hub.ingest.fold_process import FoldingProcess
from apitally_hub.limits.backlog import Backlog
from tests.support.hub_samples import new_uuid, settling_client, sync


def test_a_hub_folding_in_a_child_process_counts_everything_once(tmp_path: Path) -> None:
    client_id = new_uuid()
    with HubServer(tmp_path / "hub.sqlite", fold_in_subprocess=True) as hub, settling_client(hub) as http:
        folder = hub.context.worker
        assert isinstance(folder, FoldingProcess) and folder.alive
        messages = [sync(timestamp=time.time() - n) for n in range(20)]
        for message in messages:
            assert http.post(f"/v2/{client_id}/dev/sync", json=message).status_code == 202
        assert http.post(f"/v2/{client_id}/dev/sync", json=messages[0]).status_code == 200  # a resend
        [endpoint] = http.get(f"/api/{client_id}/dev/endpoints").json()["endpoints"]
        assert endpoint["requests"] == 20 * 42
    assert not folder.alive  # stopped with the hub


def test_the_folding_process_ends_when_its_hub_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from apitally_hub.ingest.fold_process import FoldingProcess
        from apitally_hub.storage import create_storage
        store = create_storage({str(tmp_path / "hub.sqlite")!r}); store.open()
        folder = FoldingProcess({str(tmp_path / "hub.sqlite")!r}, poll_seconds=0.05)
        folder.start()
        print(folder._process.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running()
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        child.wait(10)  # raises TimeoutExpired if it outlived its hub
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()


def test_backlog_holds_back_only_the_clients_over_their_share() -> None:
    backlog = Backlog(max_lag=30)
    now = 1000.0
    pending = {"heavy": (50_000_000, now - 40), "light": (2_000, now - 5), "other": (1_000_000, now - 1)}
    backlog.refresh(pending, now)
    assert backlog.holds_back("heavy")
    assert not backlog.holds_back("light") and not backlog.holds_back("other")
    assert not backlog.holds_back("new")
    backlog.refresh({"heavy": (50_000_000, now - 10)}, now)  # under the lag bound: nobody
    assert not backlog.holds_back("heavy")
    backlog.refresh({}, now)
    assert not backlog.holds_back("heavy")


def test_ingest_answers_503_to_the_client_behind_a_backlog(tmp_path: Path) -> None:
    heavy, light = new_uuid(), new_uuid()
    hub = HubServer(tmp_path / "hub.sqlite", fold_in_background=False, max_queue_lag=0.2)
    with hub, settling_client(hub) as http:
        for _ in range(3):
            assert http.post(f"/v2/{heavy}/dev/sync", json=sync()).status_code == 202
        deadline = time.monotonic() + 10  # the backlog view refreshes about once a second
        while (answer := http.post(f"/v2/{heavy}/dev/sync", json=sync())).status_code == 202:
            assert time.monotonic() < deadline, "never held back"
            time.sleep(0.1)
        assert answer.status_code == 503 and int(answer.headers["retry-after"]) > 0
        assert "not yet stored" in answer.json()["detail"]
        assert http.post(f"/v2/{light}/dev/sync", json=sync()).status_code == 202
