"""Instructions per request of each variant behind uvicorn's protocol, counted by callgrind.

CPU time per request under ``wrk`` moves by ±15 % with whatever else the machine runs; the number
of instructions a request executes does not. Each variant runs in ``uvicorn_worker.py`` under
``valgrind --tool=callgrind`` (one thread per dump): a warm-up batch, the counters zeroed, a
measured batch, a dump. Reported: instructions per request on the event loop's thread, on the
other threads (folding, hub client), and the overhead over the bare app::

    python -m benchmarks.client.server_instructions [--variants bare,otel,apitally-otel] \\
        [--scenario 0] [-n 500]

About 40 s per variant (valgrind runs Python ~50 times slower). Needs ``valgrind`` (Debian's).
"""

from __future__ import annotations

import argparse
import glob
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common
from benchmarks.client import apps


def _instructions(dump: str) -> int:
    text = Path(dump).read_text()
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    return int(found.group(1)) if found else 0


def measure(variant: str, scenario: apps.Scenario, n: int, sink_url: str, out: Path) -> tuple[float, float]:
    """(main thread, other threads) instructions per request."""
    worker = common.JsonProcess(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            "--dump-instr=no",
            f"--callgrind-out-file={out}/{variant}.%p",
            sys.executable,
            "-m",
            "benchmarks.client.uvicorn_worker",
            "--variant",
            variant,
            "--app",
            scenario.app,
            "--sink-url",
            sink_url,
        ]
    )
    try:
        assert worker.hello["ready"]
        worker.ask(cmd="run", scenario=scenario.name, n=max(n // 2, 100))
        time.sleep(2)  # the startup message's thread (an SSL context for the hub client) is done
        pid = str(worker.proc.pid)
        subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
        worker.ask(cmd="run", scenario=scenario.name, n=n)
        subprocess.run(["callgrind_control", "-d", "measured", pid], capture_output=True, check=True)
    finally:
        worker.close(timeout=120)
    dumps = sorted(glob.glob(f"{out}/{variant}.{pid}.1-*"))  # part 1: the measured batch
    main, *others = (_instructions(d) for d in dumps)
    return main / n, sum(others) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="bare,otel,apitally-otel")
    parser.add_argument("--scenario", type=int, default=0, help="index into apps.SCENARIOS")
    parser.add_argument("-n", type=int, default=500, help="measured requests per variant")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    scenario = apps.SCENARIOS[args.scenario]
    rows: dict[str, tuple[float, float]] = {}
    with common.sink() as sink_url, tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            rows[variant] = measure(variant, scenario, args.n, sink_url, Path(tmp))
            common.log(f"{variant}: {rows[variant][0]:,.0f} + {rows[variant][1]:,.0f} instructions/request")
    bare = sum(rows["bare"]) if "bare" in rows else None
    table = []
    for variant, (main_thread, others) in rows.items():
        total = main_thread + others
        over = f"{total - bare:,.0f}" if bare is not None else ""
        table.append([apps.VARIANT_LABELS[variant], f"{main_thread:,.0f}", f"{others:,.0f}", over])
    print(f"{scenario.name}, {args.n} requests over 16 connections, instructions per request\n")
    print(common.table(["variant", "event loop thread", "other threads", "over the bare app"], table))


if __name__ == "__main__":
    main()
