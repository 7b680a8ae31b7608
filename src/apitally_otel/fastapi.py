"""The classic ``apitally.fastapi`` API: ``ApitallyMiddleware`` and its companions.

Moving from the classic ``apitally`` client is one import line::

    from apitally_otel.fastapi import ApitallyMiddleware

    app.add_middleware(ApitallyMiddleware, client_id="<uuid>", env="prod")

The same middleware as :mod:`apitally_otel.starlette` (FastAPI is Starlette underneath), as in
the classic client. Importing this module does not import FastAPI.
"""

from apitally_otel._classic import ApitallyConsumer, ApitallyMiddleware, RequestLoggingConfig, set_consumer

__all__ = ["ApitallyConsumer", "ApitallyMiddleware", "RequestLoggingConfig", "set_consumer"]
