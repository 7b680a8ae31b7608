import apitally_otel


def test_all_is_sorted_and_complete() -> None:
    exported = apitally_otel.__all__
    assert exported == sorted(exported)
    for name in exported:
        assert hasattr(apitally_otel, name), name
    assert {
        "instrument_app",
        "set_consumer",
        "set_request_attribute",
        "capture_exception",
        "ApitallySpanProcessor",
        "ApitallyMetricReader",
    } <= set(exported)


def test_import_is_inert() -> None:
    import subprocess
    import sys

    code = (
        "import logging, threading, apitally_otel\n"
        "from opentelemetry import trace\n"
        "assert logging.getLogger('apitally_otel').handlers == []\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_classic_modules_export_the_classic_names() -> None:
    from apitally_otel import fastapi, starlette

    for module in (starlette, fastapi):
        assert module.__all__ == sorted(module.__all__)
        assert module.__all__ == [
            "ApitallyConsumer",
            "ApitallyMiddleware",
            "RequestLoggingConfig",
            "set_consumer",
        ]
        for name in module.__all__:
            assert hasattr(module, name), name
