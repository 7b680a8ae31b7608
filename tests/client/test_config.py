"""Configuration is resolved in one place (``_config``): argument, then ``APITALLY_X`` (or its
``OTEL_APITALLY_X`` alias), then default; every variable read is documented."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette

from apitally_otel import auto, environment_variables, instrument_app
from apitally_otel._config import (
    DEFAULT_HUB_TIMEOUT,
    FALSE_STRINGS,
    TRUE_STRINGS,
    env_flag,
    excluded_spans,
    resolve_hub_timeout,
)
from apitally_otel.metric_exporter import ApitallyMetricExporter
from apitally_otel.metric_reader import ApitallyMetricReader
from apitally_otel.request_logging import CALLBACKS, RequestLoggingConfig

SRC = Path(__file__).resolve().parents[2] / "src" / "apitally_otel"


def client_modules() -> list[Path]:
    modules = list(SRC.rglob("*.py"))
    assert len(modules) > 30, SRC  # the client's tree, not an empty folder
    return modules


def test_only_the_resolver_reads_the_environment() -> None:
    readers = {
        str(p.relative_to(SRC))
        for p in client_modules()
        if re.search(r"os\.environ|os\.getenv", p.read_text())
    }
    assert readers == {"_config.py"}


def test_every_variable_read_is_documented() -> None:
    documented = {name for name in vars(environment_variables) if name.startswith("APITALLY_")}
    read: set[str] = set()
    for path in client_modules():
        read |= set(re.findall(r'"(APITALLY_[A-Z_]*[A-Z])"', path.read_text()))
    prefix = "APITALLY_REQUEST_LOGGING_"
    read |= {prefix + f.upper() for f in RequestLoggingConfig.__dataclass_fields__ if f not in CALLBACKS}
    read.discard(prefix.rstrip("_"))
    assert read - documented == set()
    for name in documented:
        assert getattr(environment_variables, name) == name
        assert f".. envvar:: {name}" in (SRC / "environment_variables.py").read_text()


def test_true_and_false_are_the_same_strings_everywhere(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for value in TRUE_STRINGS | {"TRUE", " Yes "}:
        monkeypatch.setenv("APITALLY_OTLP_METRICS", value)
        assert env_flag("APITALLY_OTLP_METRICS")
        assert RequestLoggingConfig.from_env({"APITALLY_REQUEST_LOGGING_ENABLED": value}).enabled
    for value in FALSE_STRINGS:
        monkeypatch.setenv("APITALLY_DISABLED", value)
        assert not env_flag("APITALLY_DISABLED", default=True)
    with caplog.at_level(logging.WARNING):
        monkeypatch.setenv("APITALLY_DISABLED", "perhaps")
        assert not env_flag("APITALLY_DISABLED")
    assert "invalid APITALLY_DISABLED='perhaps'" in caplog.text


def test_request_logging_options_honour_the_opentelemetry_instrument_alias(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_APITALLY_REQUEST_LOGGING_ENABLED", "true")
    monkeypatch.setenv("APITALLY_REQUEST_LOGGING_MASK_HEADERS", "x-tenant, x-key")
    config = RequestLoggingConfig.from_env()
    assert config.enabled and config.mask_headers == ("x-tenant", "x-key")


def test_excluded_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    assert excluded_spans() == ["receive", "send"]
    monkeypatch.setenv("APITALLY_OTEL_EXCLUDE_SPANS", "send, bogus")
    assert excluded_spans() == ["send"]
    monkeypatch.setenv("APITALLY_OTEL_EXCLUDE_SPANS", "")  # set but empty: keep both
    assert excluded_spans() == []


def test_hub_timeout(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_hub_timeout() == DEFAULT_HUB_TIMEOUT == 10.0
    assert resolve_hub_timeout(2.5) == 2.5
    monkeypatch.setenv("OTEL_APITALLY_HUB_TIMEOUT", "4")
    assert resolve_hub_timeout() == 4.0
    monkeypatch.setenv("APITALLY_HUB_TIMEOUT", "3")
    exporter = ApitallyMetricExporter(str(uuid.uuid4()), hub_base_url="http://hub.invalid")
    assert exporter.hub_timeout == 3.0 and exporter.client is not None
    assert exporter.client.request_timeout == 3.0
    with caplog.at_level(logging.WARNING):
        monkeypatch.setenv("APITALLY_HUB_TIMEOUT", "0")
        assert resolve_hub_timeout() == DEFAULT_HUB_TIMEOUT
        monkeypatch.setenv("APITALLY_HUB_TIMEOUT", "forever")
        assert resolve_hub_timeout() == DEFAULT_HUB_TIMEOUT
    assert "hub timeout of 0 s" in caplog.text and "invalid hub request timeout 'forever'" in caplog.text


def test_app_version_and_the_uploader_settings_come_from_the_same_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APITALLY_APP_VERSION", "1.2.3")
    monkeypatch.setenv("APITALLY_REQUEST_LOGGING_ENABLED", "true")
    monkeypatch.setenv("APITALLY_HUB_TIMEOUT", "2")
    monkeypatch.setenv("APITALLY_PROXY", "http://proxy.invalid:3128")
    setup = instrument_app(
        Starlette(),
        client_id=str(uuid.uuid4()),
        hub_base_url="http://hub.invalid",
        tracer_provider=TracerProvider(),
        sync_interval=3600,
    )
    assert setup is not None and setup.request_logger is not None
    try:
        assert setup.lifecycle.app_version == "1.2.3"
        assert setup.request_logger.request_timeout == 2.0
        assert setup.request_logger._proxy == "http://proxy.invalid:3128"
    finally:
        setup.shutdown()


def test_the_zero_code_hook_looks_only_at_the_global_providers_readers() -> None:
    # Another provider of the process (e.g. one instrument_app made) has an apitally reader: the
    # global provider's readers are what counts, not the SDK's process-wide set of all readers.
    elsewhere = ApitallyMetricReader(
        ApitallyMetricExporter(str(uuid.uuid4()), hub_base_url="http://hub.invalid"), sync_interval=3600
    )
    other = MeterProvider(metric_readers=[elsewhere])
    plain = InMemoryMetricReader()
    global_like = MeterProvider(metric_readers=[plain])
    try:
        assert auto._find_reader(global_like) is None
        assert not auto._only_apitally_readers(global_like)
        assert auto._find_reader(other) is elsewhere and auto._only_apitally_readers(other)
        added = ApitallyMetricReader(
            ApitallyMetricExporter(str(uuid.uuid4()), hub_base_url="http://hub.invalid"), sync_interval=3600
        )
        global_like.add_metric_reader(added)  # readers added later count too
        assert auto._find_reader(global_like) is added
    finally:
        other.shutdown()
        global_like.shutdown()
