"""The genuine apitally 1.0.0 client on a FastAPI app: a peer exporting OTLP/HTTP to the hub.

Run by ``uvicorn apitally1_app:app --app-dir tests/support/otlp_peers`` in the ``apitally-1.0.0``
virtual environment (``benchmarks/common.py``), never imported by the project. apitally reads
``APITALLY_WRITE_TOKEN``, ``APITALLY_ENV`` and ``APITALLY_OTLP_ENDPOINT`` from the environment.

Consumers: the ``x-consumer`` request header names one (``apitally.set_consumer`` with a name and a
group). Request logging captures headers and bodies, masks the ``x-secret`` header and the
``card_number`` body field, and the app logs a line in ``GET /items``.
"""

from __future__ import annotations

import logging

import apitally  # type: ignore[import-not-found, unused-ignore]
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

logger = logging.getLogger("peer.apitally1")
logger.setLevel(logging.INFO)

ITEMS = {1: "apple", 2: "pear"}


def identify_consumer(request: Request) -> None:
    consumer = request.headers.get("x-consumer")
    if consumer:
        apitally.set_consumer(consumer, name=f"Consumer {consumer}", group="Peers")


app = FastAPI(dependencies=[Depends(identify_consumer)])


class Item(BaseModel):
    name: str
    price: float
    card_number: str | None = None


@app.get("/items")
def list_items() -> list[dict[str, object]]:
    logger.info("listing %d items", len(ITEMS))
    return [{"id": k, "name": v} for k, v in ITEMS.items()]


@app.get("/items/{item_id}")
def get_item(item_id: int) -> JSONResponse:
    if item_id not in ITEMS:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return JSONResponse({"id": item_id, "name": ITEMS[item_id]})


@app.post("/items", status_code=201)
def create_item(item: Item) -> dict[str, object]:
    return {"id": 3, "name": item.name, "price": item.price, "card_number": item.card_number}


@app.get("/boom")
def boom() -> None:
    raise RuntimeError("boom")


apitally.init(
    app,
    capture_request_headers=True,
    capture_request_body=True,
    capture_response_headers=True,
    capture_response_body=True,
    mask_headers=["x-secret"],
    mask_body_fields=["card_number"],
)
