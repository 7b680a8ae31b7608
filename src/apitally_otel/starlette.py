"""The classic ``apitally.starlette`` API: ``ApitallyMiddleware`` and its companions.

Moving from the classic ``apitally`` client is one import line::

    from apitally_otel.starlette import ApitallyMiddleware

    app.add_middleware(ApitallyMiddleware, client_id="<uuid>", env="prod")

See :mod:`apitally_otel._classic` and the migration guide (``docs/migrating.md``).
"""

from apitally_otel._classic import ApitallyConsumer, ApitallyMiddleware, RequestLoggingConfig, set_consumer

__all__ = ["ApitallyConsumer", "ApitallyMiddleware", "RequestLoggingConfig", "set_consumer"]
