"""The demo API that ``apitally-otel demo`` serves (needs FastAPI: ``pip install 'apitally-otel[fastapi]'``).

    APITALLY_CLIENT_ID=<uuid> APITALLY_HUB_BASE_URL=http://127.0.0.1:8250 \\
        python -m uvicorn apitally_hub.demo.app:app

An instrumented app like our users', so it imports the client (``apitally_otel``): the one module
of the hub that does, and nothing in the hub imports it. The demo runner (:mod:`.run`) starts it
in a uvicorn subprocess and tells it who its consumers are in ``APITALLY_DEMO_CONSUMERS`` (JSON:
``{"api_keys": {key: [name, group]}, "client_apps": {id: [name, group]}}``), so the hub process
never loads the client.

Configured like any instrumented app, by APITALLY_CLIENT_ID, APITALLY_ENV, APITALLY_HUB_BASE_URL and
APITALLY_SYNC_INTERVAL. Consumers are identified two ways: a (sync, so threadpool) dependency on
every route calls ``set_consumer`` for a known ``X-Api-Key`` (an unknown key gets 401), and the
``consumer_callback`` maps ``X-Consumer`` to a consumer. Endpoints sleep a little, so response
times look like an API's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from opentelemetry import trace
from pydantic import BaseModel, Field

import apitally_otel

APP_VERSION = "1.0.0"
logger = logging.getLogger("demo.items")
logger.setLevel(logging.INFO)
tracer = trace.get_tracer("demo")
"""Spans and log records inside requests, which request logging captures (the dashboard shows
them with each logged request)."""


def _consumer_tables() -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    tables = json.loads(os.environ.get("APITALLY_DEMO_CONSUMERS") or "{}")
    api_keys = {key: (name, group) for key, (name, group) in tables.get("api_keys", {}).items()}
    client_apps = {key: (name, group) for key, (name, group) in tables.get("client_apps", {}).items()}
    return api_keys, client_apps


API_KEYS, CLIENT_APPS = _consumer_tables()
"""``X-Api-Key`` -> (name, group), identified with ``set_consumer``; ``X-Consumer`` -> (name, group),
identified by the ``consumer_callback``."""
CATALOG_SIZE = 500
"""Items 1..500 exist; higher ids answer 404 (from a matched route, so they are counted)."""


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    price: float = Field(gt=0)
    quantity: int = Field(default=1, ge=1)


class Item(ItemIn):
    id: int


class Identity(BaseModel):
    identifier: str | None
    name: str | None
    group: str | None


def authenticate(x_api_key: Annotated[str | None, Header()] = None) -> Identity:
    """Optional API-key auth. A plain ``def``: FastAPI runs it in the threadpool."""
    if x_api_key is None:
        return Identity(identifier=None, name=None, group=None)
    if x_api_key not in API_KEYS:
        raise HTTPException(status_code=401, detail="Invalid API key")
    name, group = API_KEYS[x_api_key]
    apitally_otel.set_consumer(x_api_key, name=name, group=group)
    return Identity(identifier=x_api_key, name=name, group=group)


def consumer_from_header(request: Request) -> apitally_otel.Consumer | None:
    """The ``consumer_callback``: the client app named by ``X-Consumer``."""
    value = request.headers.get("x-consumer")
    if not value:
        return None
    name, group = CLIENT_APPS.get(value, (None, None))
    return apitally_otel.Consumer(value, name=name, group=group)


async def _work(low_ms: float, high_ms: float, slow_share: float = 0.0) -> None:
    """Pretend to do work: a random delay, with a ``slow_share`` of calls 5-10x slower."""
    delay = random.uniform(low_ms, high_ms)
    if random.random() < slow_share:
        delay *= random.uniform(5, 10)
    await asyncio.sleep(delay / 1000)


def _item(item_id: int) -> Item:
    return Item(id=item_id, name=f"Item {item_id}", price=round(1 + item_id * 0.37 % 90, 2))


_new_ids = itertools.count(CATALOG_SIZE + 1)

router = APIRouter(prefix="/api/items", tags=["items"])


@router.get("/")
async def list_items(limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[Item]:
    with tracer.start_as_current_span("db.query items"):
        await _work(3, 20, slow_share=0.03)
    with tracer.start_as_current_span("serialize"):
        items = [_item(i) for i in range(1, limit + 1)]
    logger.info("Listed %d items", len(items))
    return items


@router.get("/{item_id}")
async def get_item(item_id: int) -> Item:
    with tracer.start_as_current_span("cache.get item"):
        await _work(0.2, 1)
    with tracer.start_as_current_span("db.query item"):
        await _work(1, 8, slow_share=0.05)
    if not 1 <= item_id <= CATALOG_SIZE:
        logger.warning("Item %d not found", item_id)
        raise HTTPException(status_code=404, detail="Item not found")
    return _item(item_id)


@router.post("/", status_code=201)
async def create_item(item: ItemIn) -> Item:
    await _work(5, 30)
    return Item(id=next(_new_ids), **item.model_dump())


@router.delete("/{item_id}", status_code=204)
async def delete_item(item_id: int) -> None:
    await _work(2, 12)
    if not 1 <= item_id <= CATALOG_SIZE:
        raise HTTPException(status_code=404, detail="Item not found")


app = FastAPI(title="apitally-otel demo API", version=APP_VERSION, dependencies=[Depends(authenticate)])
app.include_router(router)


@app.get("/api/stream")
async def stream() -> StreamingResponse:
    """A CSV export streamed in chunks."""

    async def rows() -> AsyncIterator[bytes]:
        yield b"id,name,price\n"
        for start in range(1, 201, 20):
            await asyncio.sleep(0.002)
            yield "".join(f"{i},Item {i},{_item(i).price}\n" for i in range(start, start + 20)).encode()

    return StreamingResponse(rows(), media_type="text/csv")


@app.get("/api/fail")
async def fail() -> None:
    with tracer.start_as_current_span("db.connect"):
        await _work(5, 15)
    logger.error("Cannot reach the database")
    raise RuntimeError("the database is on fire")


@app.get("/api/me")
def me(identity: Annotated[Identity, Depends(authenticate)]) -> Identity:  # runs in the threadpool
    time.sleep(random.uniform(0.5, 3) / 1000)
    return identity


apitally_otel.instrument_app(app, consumer_callback=consumer_from_header, app_version=APP_VERSION)
