"""An app with no apitally code at all, for zero-code monitoring:

    pip install "apitally-otel[auto]"
    APITALLY_CLIENT_ID=<uuid> APITALLY_HUB_BASE_URL=http://127.0.0.1:8250 \\
      opentelemetry-instrument uvicorn examples.zero_code_app:app

It identifies consumers with a plain OpenTelemetry span attribute.
"""

from __future__ import annotations

from fastapi import FastAPI, Header, Request
from opentelemetry import trace
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

tracer = trace.get_tracer(__name__)


class Order(BaseModel):
    item: str
    quantity: int


app = FastAPI(title="Zero-code example")


@app.get("/orders/{order_id}")
async def get_order(order_id: int, x_customer: str | None = Header(default=None)) -> dict[str, object]:
    if x_customer:
        with tracer.start_as_current_span("authenticate") as span:
            span.set_attribute("apitally.consumer.identifier", x_customer)
            span.set_attribute("apitally.consumer.name", x_customer.title())
    return {"id": order_id}


@app.post("/orders")
async def create_order(order: Order) -> Order:
    return order


@app.get("/boom")
async def boom() -> None:
    raise LookupError("no such thing")


async def legacy_status(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"legacy {request.path_params['name']}")


app.mount("/legacy", Starlette(routes=[Route("/status/{name}", legacy_status)]))
