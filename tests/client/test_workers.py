"""Instance identity and fork safety: slot lock files, fork handlers, and real multi-worker servers
(``uvicorn --workers 2``, gunicorn with uvicorn workers, with and without ``--preload``)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from starlette.applications import Starlette

from apitally_hub import HubServer
from apitally_otel._config import resolve_settings
from apitally_otel._hub import instance
from apitally_otel._hub.instance import instance_uuid, release_instance_uuid
from apitally_otel.metric_exporter import ApitallyMetricExporter
from apitally_otel.metric_reader import ApitallyMetricReader
from tests.support.delivery import (
    APP,
    Key,
    app_env,
    hub_totals,
    instances,
    ledger,
    running,
    traffic,
    wait_until,
)
from tests.support.servers import ROOT, AppProcess, bound_socket

# -- slot lock files --------------------------------------------------------------------------


@pytest.fixture
def fresh_warning() -> Iterator[None]:
    """Each test sees the once-per-process warning of ``_hub.instance`` anew."""
    instance._warned = False
    yield
    instance._warned = False


def test_ids_are_stable_per_slot_and_distinct_when_concurrent(tmp_path: Path) -> None:
    directory = str(tmp_path / "ids")
    first = instance_uuid("c", "e", directory)
    second = instance_uuid("c", "e", directory)  # slot 0 is held: the next one
    assert first != second and uuid.UUID(first) and uuid.UUID(second)
    release_instance_uuid(first)
    assert instance_uuid("c", "e", directory) == first  # "restarted": the same slot, the same id
    assert instance_uuid("c", "other-env", directory) not in (first, second)
    assert os.stat(directory).st_mode & 0o777 == 0o700
    slot_file = next(Path(directory).glob("instance_*_0.lock"))
    assert slot_file.stat().st_mode & 0o777 == 0o600


def test_ids_across_processes(tmp_path: Path) -> None:
    directory = str(tmp_path / "ids")
    held = instance_uuid("c", "e", directory)
    script = (
        "import sys; from apitally_otel._hub.instance import instance_uuid;"
        " print(instance_uuid('c', 'e', sys.argv[1]))"
    )

    def worker() -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, directory],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")},
        )
        return done.stdout.strip()

    restarted = worker()
    assert restarted != held  # a concurrent process gets its own slot
    assert worker() == restarted  # the slot was freed at exit: the same id again
    release_instance_uuid(held)


@pytest.mark.usefixtures("fresh_warning")
@pytest.mark.parametrize(
    "problem", ["open to others", "symlink", "missing", "not a directory", "other owner"]
)
def test_an_unsafe_or_unusable_directory_gives_a_random_id(
    problem: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "ids"
    if problem == "open to others":
        directory.mkdir(mode=0o700)
        directory.chmod(0o777)  # e.g. pre-created by another user to plant ids
    elif problem == "symlink":
        target = tmp_path / "elsewhere"
        target.mkdir(mode=0o700)
        directory.symlink_to(target)
    elif problem == "missing":
        directory = tmp_path / "no" / "such" / "dir"
    elif problem == "not a directory":
        directory.write_text("x")
    elif problem == "other owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to give a directory away")
        directory.mkdir(mode=0o700)
        os.chown(directory, 65534, 65534)
    with caplog.at_level(logging.WARNING):
        ids = {instance_uuid("c", "e", str(directory)) for _ in range(3)}
    assert len(ids) == 3  # random each time, never a planted one
    assert len([r for r in caplog.records if "cannot keep a stable instance id" in r.getMessage()]) == 1
    if directory.is_dir():
        assert not list(directory.glob("instance_*"))


@pytest.mark.usefixtures("fresh_warning")
def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    directory = tmp_path / "ids"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    instance_uuid("c", "e", str(directory))  # creates the private directory and slot 0
    planted = next(directory.glob("instance_*_0.lock")).with_name(
        next(directory.glob("instance_*_0.lock")).name.replace("_0.", "_1.")
    )
    planted.symlink_to(victim)
    uuid.UUID(instance_uuid("c", "e", str(directory)))  # slot 1 refused: a random id
    assert victim.read_text() == "precious"


def test_a_temp_dir_that_is_not_usable_at_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_warning: None, caplog: pytest.LogCaptureFixture
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING):
        uuid.UUID(instance_uuid("c", "e"))
    assert "gone" in caplog.text


# -- fork handlers, in this process ----------------------------------------------------------------
class MockHub:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.messages.append((request.url.path.rsplit("/", 1)[-1], json.loads(request.content)))
        return httpx.Response(202)

    def requests(self, index: int = 0) -> int:
        return sum(i["request_count"] for k, m in self.messages[index:] if k == "sync" for i in m["requests"])


def in_forked_child(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fork; run ``work`` in the child and return what it returned (JSON through a pipe)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads running
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(work()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data
    result: dict[str, Any] = json.loads(data)
    return result


@pytest.fixture
def pipeline() -> Iterator[tuple[ApitallyMetricExporter, ApitallyMetricReader, MockHub]]:
    hub = MockHub()
    settings = resolve_settings(str(uuid.uuid4()), "test", "http://hub.invalid", sync_interval=3600)
    exporter = ApitallyMetricExporter(settings=settings, _transport=httpx.MockTransport(hub))
    reader = ApitallyMetricReader(exporter, sync_interval=3600)  # collections only when asked
    yield exporter, reader, hub
    reader.shutdown(timeout_millis=5000)


def record_requests(reader: ApitallyMetricReader, count: int) -> None:
    for _ in range(count):
        reader.span_processor.aggregator.add_request(None, "GET", "/r", 200, 0.01, None, None)


def sync_now(exporter: ApitallyMetricExporter, reader: ApitallyMetricReader) -> None:
    reader.collect()
    assert exporter.client is not None and exporter.client.flush(5)


def test_a_pre_fork_master_goes_quiet_and_its_child_is_a_new_instance(
    pipeline: tuple[ApitallyMetricExporter, ApitallyMetricReader, MockHub],
) -> None:
    exporter, reader, hub = pipeline
    sync_now(exporter, reader)  # the master's heartbeat before it forks (gunicorn --preload)
    master_id = exporter.instance_uuid

    def child() -> dict[str, Any]:
        quiet = not exporter._active
        reader.collect()  # nothing counted here yet and not serving: no heartbeat
        nothing = exporter.client is not None and exporter.client.pending == 0 and len(hub.messages) == 1
        exporter.set_app(Starlette())  # the worker's lifespan startup
        record_requests(reader, 2)
        sync_now(exporter, reader)
        return {
            "quiet": quiet,
            "nothing": nothing,
            "id": exporter.instance_uuid,
            "kinds": [k for k, _ in hub.messages[1:]],
            "ids": sorted({m["instance_uuid"] for _, m in hub.messages[1:]}),
            "requests": hub.requests(1),
        }

    seen = in_forked_child(child)
    assert seen["quiet"] and seen["nothing"]
    assert seen["id"] != master_id and seen["ids"] == [seen["id"]]
    assert seen["kinds"] == ["startup", "sync"] and seen["requests"] == 2

    assert not exporter._active  # the parent had not served: a master, quiet from now on
    reader.collect()
    assert exporter.client is not None and exporter.client.pending == 0 and len(hub.messages) == 1
    record_requests(reader, 1)  # ...until it does serve
    sync_now(exporter, reader)
    assert hub.requests() == 1 and {m["instance_uuid"] for _, m in hub.messages} == {master_id}


def test_what_was_counted_before_a_fork_is_reported_by_the_parent_only(
    pipeline: tuple[ApitallyMetricExporter, ApitallyMetricReader, MockHub],
) -> None:
    exporter, reader, hub = pipeline
    record_requests(reader, 3)

    def child() -> dict[str, Any]:
        reader.collect()
        return {"series": len(reader.span_processor.aggregator.drain().series), "messages": len(hub.messages)}

    assert in_forked_child(child) == {"series": 0, "messages": 0}
    sync_now(exporter, reader)
    assert hub.requests() == 3


def test_a_serving_parent_keeps_syncing_after_a_fork(
    pipeline: tuple[ApitallyMetricExporter, ApitallyMetricReader, MockHub],
) -> None:
    exporter, reader, hub = pipeline
    exporter.set_app(Starlette())  # serving (e.g. a process pool forked by the app)

    def child() -> dict[str, Any]:
        reader.collect()
        return {"quiet": not exporter._active, "startup_sent": exporter._startup_sent}

    assert in_forked_child(child) == {"quiet": True, "startup_sent": False}
    sync_now(exporter, reader)
    assert [k for k, _ in hub.messages] == ["startup", "sync"]


# -- real multi-worker servers --------------------------------------------------------------------
class GunicornProcess(AppProcess):
    """Like :class:`AppProcess`, with gunicorn and uvicorn workers on the socket bound here."""

    def __init__(self, target: str, env: dict[str, str], *args: str) -> None:
        self.sock = bound_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        command = [sys.executable, "-m", "gunicorn", target, "--bind", f"fd://{self.sock.fileno()}"]
        command += ["-k", "uvicorn.workers.UvicornWorker", "--graceful-timeout", "10"]
        self.proc = subprocess.Popen(
            [*command, "--log-level", "warning", *args],
            env={
                "PATH": os.environ.get("PATH", ""),
                "PYTHONPATH": ROOT,
                "TMPDIR": os.environ["TMPDIR"],
                **env,
            },
            pass_fds=[self.sock.fileno()],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ""


def workers_of(process: AppProcess) -> list[int]:
    pids = []
    for child in psutil.Process(process.proc.pid).children():
        with contextlib.suppress(psutil.Error):  # gone meanwhile
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                pids.append(child.pid)
    return sorted(pids)


def restart_one_worker(process: AppProcess) -> float:
    """SIGTERM one worker (a graceful exit, final sync included); wait for its replacement."""
    before = workers_of(process)
    assert len(before) == 2, before
    restarted_at = time.time()
    os.kill(before[0], signal.SIGTERM)
    wait_until(
        lambda: before[0] not in workers_of(process) and len(workers_of(process)) == 2, what="a new worker"
    )
    return restarted_at


@contextlib.contextmanager
def served_by(kind: str, client_id: str, hub_url: str) -> Iterator[AppProcess]:
    env = app_env(client_id, hub_url)
    if kind == "uvicorn --workers 2":
        process: AppProcess = AppProcess(APP, env, "--workers", "2")
    else:
        extra = ("--preload",) if "preload" in kind else ()
        process = GunicornProcess(APP, env, "-w", "2", *extra)
    with running(process) as ready:
        yield ready


@pytest.mark.parametrize("kind", ["uvicorn --workers 2", "gunicorn -w 2", "gunicorn -w 2 --preload"])
def test_workers_have_their_own_ids_and_exact_totals(kind: str) -> None:
    client_id = str(uuid.uuid4())
    served: Counter[Key] = Counter()
    with HubServer() as hub:
        with served_by(kind, client_id, hub.url) as app:
            traffic(app.url, 40, served, fresh=True)
            wait_until(
                lambda: sum(1 for i in instances(hub, client_id) if i["startup_at"]) == 2,
                what="both workers' startup",
            )
            restarted_at = restart_one_worker(app)
            wait_until(
                lambda: any((i["startup_at"] or 0) > restarted_at for i in instances(hub, client_id)),
                what="the new worker's startup",
            )
            traffic(app.url, 40, served, fresh=True)
            output = app.stop()
        counted = hub_totals(hub, client_id)
        ids = instances(hub, client_id)
    ledger(kind, served, counted)
    assert counted == served, output
    # Two ids in all: the replacement took the slot (and the id) its predecessor left. With
    # --preload the master, which serves nothing, never shows up as an instance.
    assert len(ids) == 2 and all(i["startup_at"] for i in ids), (ids, output)
    assert "Traceback" not in output, output
