"""A FastAPI app monitored with apitally-otel.

    APITALLY_CLIENT_ID=<uuid> APITALLY_HUB_BASE_URL=http://127.0.0.1:8250 uvicorn examples.fastapi_app:app

Reads APITALLY_CLIENT_ID, APITALLY_ENV, APITALLY_HUB_BASE_URL and APITALLY_SYNC_INTERVAL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

import apitally_otel


class Item(BaseModel):
    name: str
    price: float
    quantity: int = 1


router = APIRouter(prefix="/api/items", tags=["items"])


@router.get("/")
async def list_items(limit: int = 10) -> list[dict[str, int]]:
    return [{"id": i} for i in range(min(limit, 3))]


@router.get("/{item_id}")
async def get_item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@router.post("/", status_code=201)
async def create_item(item: Item) -> Item:
    return item


app = FastAPI(title="Example API", version="1.0.0")
app.include_router(router)


@app.get("/api/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(10):
            await asyncio.sleep(0.001)
            yield f"chunk {i}\n".encode() * 100

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/api/fail")
async def fail() -> None:
    raise RuntimeError("the database is on fire")


@app.get("/api/me")
def me(x_api_key: str | None = Header(default=None)) -> dict[str, str | None]:  # runs in the threadpool
    if x_api_key:
        apitally_otel.set_consumer(x_api_key, name=f"Customer {x_api_key}", group="Customers")
    return {"key": x_api_key}


def consumer_from_header(request: Request) -> str | None:
    return request.headers.get("x-consumer")


apitally_otel.instrument_app(app, consumer_callback=consumer_from_header, app_version="1.0.0")
