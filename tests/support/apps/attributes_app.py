"""A FastAPI app that tags its requests with ``apitally_otel.set_request_attribute``.

``app`` is set up with ``instrument_app``, unless ``ZERO_CODE=1``: then nothing here sets anything
up (``opentelemetry-instrument uvicorn tests.support.apps.attributes_app:app``). Request logging and
everything else come from the ``APITALLY_*`` env vars.
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI, Header

import apitally_otel


def tenant(x_tenant: str | None = Header(default=None)) -> str | None:
    """A dependency that tags the request with the caller's tenant."""
    if x_tenant:
        apitally_otel.set_request_attribute("tenant", x_tenant)
    return x_tenant


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int, who: str | None = Depends(tenant)) -> dict[str, object]:
        apitally_otel.set_request_attribute("order.priority", order_id % 3)
        apitally_otel.set_request_attribute("express", order_id == 7)
        return {"id": order_id, "tenant": who}

    @app.get("/untagged")
    def untagged() -> dict[str, str]:
        return {"ok": "yes"}

    return app


app = make_app()
if os.environ.get("ZERO_CODE") != "1":
    apitally_otel.instrument_app(app)
