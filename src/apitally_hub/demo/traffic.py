"""Simulated traffic for the demo API (:mod:`.app`): a few concurrent clients, several consumers.

:func:`drive` sends a weighted mix of requests for a while and keeps a :class:`Ledger` of every
response: per counted endpoint (method, route template, status), per identified consumer, and
the requests to unknown URLs (404 without a matching route: not counted by design). The ledger is
what the hub must show, exactly. Every run starts with a short tour of the interesting cases
(validation errors in query, path and body, a server error, a stream, unknown URLs, a 401), so
even a short run has them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .consumers import API_KEYS, CLIENT_APPS, REVOKED_API_KEY

ITEMS = "/api/items/"
ITEM = "/api/items/{item_id}"
STREAM = "/api/stream"
FAIL = "/api/fail"
ME = "/api/me"

CONCURRENCY = 4
UNKNOWN_URLS = ("/favicon.ico", "/api/item", "/api/v2/items/", "/wp-login.php", "/.env")


@dataclass(frozen=True)
class Call:
    """One request; ``route`` is the template the app counts it under, None for unknown URLs."""

    method: str
    url: str
    route: str | None
    params: dict[str, str] | None = None
    json: Any = None


@dataclass(frozen=True)
class Caller:
    """Who sends a request: its headers and the consumer the app should identify (None: nobody)."""

    label: str
    headers: dict[str, str]
    identifier: str | None


def callers() -> list[tuple[Caller, float]]:
    """The callers with their traffic weights."""
    weights = dict(zip(API_KEYS, (25.0, 15.0, 10.0, 5.0), strict=True))
    result = [(Caller(name, {"X-Api-Key": key}, key), weights[key]) for key, (name, _) in API_KEYS.items()]
    app_weights = dict(zip(CLIENT_APPS, (15.0, 10.0, 5.0), strict=True))
    result += [
        (Caller(name, {"X-Consumer": key}, key), app_weights[key]) for key, (name, _) in CLIENT_APPS.items()
    ]
    result.append((Caller("anonymous", {}, None), 12.0))
    result.append((Caller("revoked key", {"X-Api-Key": REVOKED_API_KEY}, None), 2.0))
    return result


def _new_item(rng: random.Random) -> dict[str, Any]:
    return {
        "name": rng.choice(["Widget", "Gadget", "Gizmo", "Doohickey"]) + f" {rng.randint(1, 999)}",
        "price": round(rng.uniform(1, 250), 2),
        "quantity": rng.randint(1, 20),
    }


def _bad_item(rng: random.Random) -> dict[str, Any]:
    item = _new_item(rng)
    flaw = rng.randrange(4)
    if flaw == 0:
        del item["price"]  # missing
    elif flaw == 1:
        item["price"] = "cheap"  # float_parsing
    elif flaw == 2:
        item["quantity"] = 0  # greater_than_equal
    else:
        item["name"] = ""  # string_too_short
    return item


# The request mix: (weight, factory).
Factory = Callable[[random.Random], Call]
MIX: Sequence[tuple[float, Factory]] = (
    (25.0, lambda r: Call("GET", ITEMS, ITEMS, params={"limit": str(r.choice([5, 10, 20, 50]))})),
    (1.5, lambda r: Call("GET", ITEMS, ITEMS, params={"limit": r.choice(["ten", "0", "500"])})),
    (30.0, lambda r: Call("GET", f"/api/items/{r.randint(1, 500)}", ITEM)),
    (2.0, lambda r: Call("GET", f"/api/items/{r.randint(501, 9999)}", ITEM)),
    (1.0, lambda r: Call("GET", f"/api/items/{r.choice(['latest', 'abc', '1.5'])}", ITEM)),
    (10.0, lambda r: Call("POST", ITEMS, ITEMS, json=_new_item(r))),
    (3.0, lambda r: Call("POST", ITEMS, ITEMS, json=_bad_item(r))),
    (2.0, lambda r: Call("DELETE", f"/api/items/{r.randint(1, 520)}", ITEM)),
    (2.0, lambda r: Call("GET", STREAM, STREAM)),
    (0.7, lambda r: Call("GET", FAIL, FAIL)),
    (8.0, lambda r: Call("GET", ME, ME)),
    (0.2, lambda r: Call("GET", r.choice(UNKNOWN_URLS), None)),
)

_ANONYMOUS = Caller("anonymous", {}, None)


def tour() -> list[tuple[Call, Caller]]:
    """The cases every run covers first (one each), whatever its length."""
    acme, globex = (Caller(name, {"X-Api-Key": key}, key) for key, (name, _) in list(API_KEYS.items())[:2])
    ios = Caller("iOS app", {"X-Consumer": "ios-app"}, "ios-app")
    return [
        (Call("GET", ITEMS, ITEMS, params={"limit": "10"}), acme),
        (Call("GET", ITEMS, ITEMS, params={"limit": "ten"}), acme),  # 422, query
        (Call("GET", "/api/items/latest", ITEM), globex),  # 422, path
        (Call("POST", ITEMS, ITEMS, json={"name": "Widget"}), ios),  # 422, body (price missing)
        (Call("POST", ITEMS, ITEMS, json={"name": "Widget", "price": 9.5}), ios),
        (Call("GET", "/api/items/7", ITEM), _ANONYMOUS),
        (Call("GET", "/api/items/4242", ITEM), globex),  # 404 from a matched route: counted
        (Call("GET", STREAM, STREAM), ios),
        (Call("GET", FAIL, FAIL), acme),  # 500 with a traceback
        (Call("GET", ME, ME), globex),
        (Call("GET", ME, ME), Caller("revoked key", {"X-Api-Key": REVOKED_API_KEY}, None)),  # 401
        (Call("GET", "/favicon.ico", None), _ANONYMOUS),  # no route: not counted
        (Call("GET", "/api/item", None), acme),
    ]


@dataclass
class Ledger:
    """What was sent, by outcome."""

    counted: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    """(method, route template, status) -> responses, for requests that matched a route."""
    consumers: Counter[str] = field(default_factory=Counter)
    """consumer identifier -> counted requests it made (identified consumers only)."""
    uncounted: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    """(method, url, status) -> responses, for unknown URLs."""
    failures: list[str] = field(default_factory=list)
    """Requests that got no response (the run is then not exact)."""

    @property
    def counted_total(self) -> int:
        return sum(self.counted.values())

    @property
    def sent(self) -> int:
        return self.counted_total + sum(self.uncounted.values()) + len(self.failures)

    def status_classes(self) -> Counter[str]:
        classes: Counter[str] = Counter()
        for (_, _, status), count in (self.counted + self.uncounted).items():
            classes[f"{status // 100}xx"] += count
        return classes

    def record(self, call: Call, caller: Caller, status: int) -> None:
        if call.route is None:
            self.uncounted[(call.method, call.url, status)] += 1
            return
        self.counted[(call.method, call.route, status)] += 1
        if caller.identifier is not None:
            self.consumers[caller.identifier] += 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``endpoints`` like the report's (method, path, requests, status_codes)."""
        endpoints: dict[tuple[str, str], dict[str, Any]] = {}
        for (method, path, status), count in sorted(self.counted.items()):
            entry = endpoints.setdefault((method, path), {"method": method, "path": path, "requests": 0})
            entry["requests"] += count
            entry.setdefault("status_codes", {})[str(status)] = count
        return {
            "requests": self.sent,
            "counted_requests": self.counted_total,
            "endpoints": list(endpoints.values()),
            "consumers": dict(sorted(self.consumers.items())),
            "uncounted": [
                {"method": m, "url": u, "status_code": s, "requests": c}
                for (m, u, s), c in sorted(self.uncounted.items())
            ],
            "failures": list(self.failures),
        }


Progress = Callable[[float, Ledger], None]
"""Called as ``progress(elapsed_seconds, ledger)`` while the traffic runs."""


THINK_SECONDS = (0.0, 0.01)
"""Pause of a simulated client between two requests (uniform in this range)."""
GENTLE_THINK_SECONDS = (0.3, 1.2)
"""The pause of ``demo --serve``'s background traffic: a few requests per second."""


class _Traffic:
    def __init__(
        self,
        client: httpx.AsyncClient,
        duration: float,
        rng: random.Random,
        think: tuple[float, float] = THINK_SECONDS,
    ) -> None:
        self.client = client
        self.rng = rng
        self.think = think
        self.ledger = Ledger()
        self.started = time.monotonic()
        self.deadline = self.started + duration
        self.pending = tour()
        callers_and_weights = callers()
        self.callers = [c for c, _ in callers_and_weights]
        self.caller_weights = [w for _, w in callers_and_weights]
        self.mix_weights = [w for w, _ in MIX]

    def _next(self) -> tuple[Call, Caller]:
        if self.pending:
            return self.pending.pop(0)
        (caller,) = self.rng.choices(self.callers, self.caller_weights)
        ((_, factory),) = self.rng.choices(MIX, self.mix_weights)
        return factory(self.rng), caller

    async def worker(self) -> None:
        while time.monotonic() < self.deadline and not self.ledger.failures:
            call, caller = self._next()
            headers = caller.headers
            if call.route == FAIL:
                # uvicorn closes the connection after an exception escaped the app (even once the 500
                # went out): without this, the next request on that kept-alive connection can race the
                # close and get no response.
                headers = {**headers, "Connection": "close"}
            try:
                response = await self.client.request(
                    call.method, call.url, params=call.params, json=call.json, headers=headers
                )
            except httpx.HTTPError as exc:
                self.ledger.failures.append(f"{call.method} {call.url}: {exc!r}")
                return
            self.ledger.record(call, caller, response.status_code)
            await asyncio.sleep(self.rng.uniform(*self.think))

    async def report(self, progress: Progress, interval: float) -> None:
        while True:
            progress(time.monotonic() - self.started, self.ledger)
            await asyncio.sleep(interval)


async def drive(
    base_url: str,
    duration: float,
    *,
    concurrency: int = CONCURRENCY,
    progress: Progress | None = None,
    progress_interval: float = 0.25,
    seed: int | None = None,
    think: tuple[float, float] = THINK_SECONDS,
) -> Ledger:
    """Send traffic to ``base_url`` for ``duration`` seconds (may be ``math.inf``) from
    ``concurrency`` clients at a time, each pausing ``think`` seconds between requests.

    Stops early at the first request without a response (recorded in ``Ledger.failures``).
    """
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0, limits=limits) as client:
        traffic = _Traffic(client, duration, random.Random(seed), think)
        reporter = asyncio.ensure_future(traffic.report(progress, progress_interval)) if progress else None
        try:
            await asyncio.gather(*(traffic.worker() for _ in range(concurrency)))
        finally:
            if reporter is not None:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
        if progress is not None:
            progress(time.monotonic() - traffic.started, traffic.ledger)
        return traffic.ledger


def generate_traffic(
    base_url: str,
    duration: float,
    *,
    concurrency: int = CONCURRENCY,
    progress: Progress | None = None,
    seed: int | None = None,
    think: tuple[float, float] = THINK_SECONDS,
) -> Ledger:
    """:func:`drive` in a fresh event loop."""
    return asyncio.run(
        drive(base_url, duration, concurrency=concurrency, progress=progress, seed=seed, think=think)
    )
