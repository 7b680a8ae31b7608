"""Ingest throughput of the local hub: sync messages/s and request-log lines/s.

Starts a hub on 127.0.0.1 (ephemeral port, temporary database), pre-builds the payloads, then
times bounded loops of POSTs over keep-alive connections from one or more client threads::

    python -m benchmarks.hub.ingest [--syncs 400] [--items 20] [--files 20] [--lines 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from apitally_hub import HubServer


def _sync_body(items: int, rng: random.Random) -> bytes:
    requests = []
    for i in range(items):
        count = rng.randint(1, 50)
        fast = rng.randint(0, count)
        requests.append(
            {
                "consumer": f"consumer-{i % 5}" if i % 3 else None,
                "method": "GET" if i % 4 else "POST",
                "path": f"/api/resource{i // 4}/{{item_id}}",
                "status_code": (200, 201, 404, 422, 500)[i % 5],
                "request_count": count,
                "request_size_sum": count * 100,
                "response_size_sum": count * 1500,
                "response_times": {"0": fast, "30": count - fast} if count > fast else {"0": fast},
                "request_sizes": {"0": count},
                "response_sizes": {"1": count},
            }
        )
    message = {
        "instance_uuid": str(uuid.uuid4()),
        "message_uuid": str(uuid.uuid4()),
        "timestamp": time.time(),
        "requests": requests,
        "validation_errors": [],
        "server_errors": [],
        "consumers": [{"identifier": "consumer-1", "name": "Consumer One", "group": None}],
        "resources": {"cpu_percent": 1.5, "memory_rss": 50_000_000},
    }
    return json.dumps(message).encode()


def _log_body(lines: int) -> bytes:
    now = time.time()
    body = base64.b64encode(b'{"id": 123, "name": "something"}').decode()
    out = []
    for i in range(lines):
        out.append(
            json.dumps(
                {
                    "uuid": str(uuid.uuid4()),
                    "request": {
                        "timestamp": now + i * 0.001,
                        "method": "GET",
                        "path": "/api/items/{item_id}",
                        "url": f"https://example.com/api/items/{i}?q=x",
                        "headers": [["accept", "application/json"]],
                        "consumer": "acme",
                    },
                    "response": {
                        "status_code": 200,
                        "response_time": 0.012,
                        "headers": [["content-type", "application/json"]],
                        "size": 32,
                        "body": body,
                    },
                }
            )
        )
    return gzip.compress(("\n".join(out) + "\n").encode())


def _timed(bodies: list[tuple[str, dict[str, str], bytes]], url: str, threads: int) -> float:
    def send(chunk: list[tuple[str, dict[str, str], bytes]]) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for path, headers, content in chunk:
                response = http.post(path, content=content, headers=headers)
                if response.status_code != 202:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")

    chunks = [bodies[i::threads] for i in range(threads)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(send, chunk) for chunk in chunks]:
            future.result()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=400)
    parser.add_argument("--items", type=int, default=20, help="request items per sync")
    parser.add_argument("--files", type=int, default=20, help="log files")
    parser.add_argument("--lines", type=int, default=1000, help="lines per log file")
    parser.add_argument("--threads", type=int, default=2, help="concurrent client threads")
    args = parser.parse_args(argv)
    rng = random.Random(1)
    client_id = str(uuid.uuid4())
    json_headers = {"content-type": "application/json"}
    sync_path = f"/v2/{client_id}/bench/sync"
    syncs = [(sync_path, json_headers, _sync_body(args.items, rng)) for _ in range(args.syncs)]
    log_body = _log_body(args.lines)  # one body; each POST gets its own file uuid, lines are re-keyed below
    logs = []
    for _ in range(args.files):
        lines = gzip.decompress(log_body).decode().splitlines()
        fresh = [line.replace(line[10:46], str(uuid.uuid4()), 1) for line in lines]
        body = gzip.compress(("\n".join(fresh) + "\n").encode())
        logs.append((f"/v2/{client_id}/bench/log?uuid={uuid.uuid4()}", {}, body))

    results: dict[str, Any] = {}
    with HubServer() as hub:
        elapsed = _timed(syncs, hub.url, args.threads)
        results["sync_messages_per_s"] = round(args.syncs / elapsed, 1)
        results["sync_request_items_per_s"] = round(args.syncs * args.items / elapsed, 1)
        elapsed = _timed(logs, hub.url, args.threads)
        results["log_lines_per_s"] = round(args.files * args.lines / elapsed, 1)
        results["log_files_per_s"] = round(args.files / elapsed, 2)
        results["log_file_compressed_bytes"] = len(logs[0][2])
    results.update(vars(args))
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
