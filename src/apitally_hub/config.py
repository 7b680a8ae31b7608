"""The hub's configuration, resolved once: :class:`HubConfig`, a frozen value validated on creation.

``apitally-otel hub`` builds it with :func:`load_config` from the command line and the
environment (the options themselves come from the fields: :func:`add_arguments`); tests and
:class:`~apitally_hub.server.HubServer` build it directly. It is passed whole to
:func:`~apitally_hub.web.app.create_app` and :func:`~apitally_hub.server.serve`; each part of the
hub reads the section it needs (``config.alerting``, ``config.retention``, ``config.transport``).
"""

from __future__ import annotations

import argparse
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from apitally_hub.alerting import rulesfile
from apitally_hub.alerting.config import AlertingConfig
from apitally_hub.ingest.otlp import held
from apitally_hub.options import FLAG, SECTION, Flag, option, section
from apitally_hub.protocol.messages import normalize_client_id
from apitally_hub.security.hosts import HostPolicy
from apitally_hub.security.tokens import TokenError, check_token, resolve_token_roles
from apitally_hub.storage.records import DAY, HOUR, MINUTE, RetentionPolicy

DEFAULT_DB = "./apitally-hub.sqlite"
DEFAULT_PORT = 8250

DEFAULT_MAX_BODY_BYTES = 10_000_000
"""Limit for JSON bodies (``/startup`` and ``/sync``), enforced while the body streams in."""

DEFAULT_MAX_LOG_BYTES = 2_000_000
"""Limit for a compressed ``/log`` body: the protocol's 1 MB per file plus a margin."""

DEFAULT_MAX_LOG_DECOMPRESSED_BYTES = 50_000_000
"""Limit for a decompressed ``/log`` body (a gzip bomb is answered with 413)."""

DEFAULT_MAX_INFLIGHT_BODY_BYTES = 64 * 1024 * 1024
"""Process-wide budget for request bodies in flight (see :mod:`.limits.budget`)."""

DEFAULT_INGEST_RATE = 4 * 1024 * 1024
DEFAULT_INGEST_BURST = 256 * 1024 * 1024
"""Per-client ingest rate limit in bytes/s and bytes (see :mod:`.limits.rate`); a rate of 0 turns it off."""

DEFAULT_MAX_QUEUE_LAG = 30.0
"""See :mod:`.limits.backlog`."""

DEFAULT_BODY_TIMEOUT = 30.0
"""Seconds a client has to send a whole request body (408 after that)."""
DEFAULT_HEADER_TIMEOUT = 10.0
"""Seconds a client has to send a request's headers (the connection is closed after that)."""
DEFAULT_KEEP_ALIVE_TIMEOUT = 5
"""Idle seconds between two requests on a connection."""

DEFAULT_RETENTION_DAYS = 30.0
"""Per-minute aggregates (and heartbeats)."""
DEFAULT_HOURLY_RETENTION_DAYS = 395.0
"""Per-hour aggregates: 13 months."""
DEFAULT_DAILY_RETENTION_DAYS = 1826.0
"""Per-day aggregates: 5 years."""
DEFAULT_REQUEST_LOG_RETENTION_DAYS = 15.0
DEFAULT_RAW_RETENTION_DAYS = 3.0
"""Raw messages, after they are folded (kept to recognise resends and to debug clients)."""
DEFAULT_REJECTIONS_RETENTION_DAYS = 7.0
DEFAULT_PRUNE_INTERVAL = 3600.0
DEFAULT_SYNC_INTERVAL = 60.0
"""Assumed sync interval of an instance until two consecutive syncs show the real one."""


class ConfigError(ValueError):
    """A configuration the hub refuses to start with (the CLI prints it in one line, exit code 2)."""


# -- parsers of option values (argparse ``type=``) ---------------------------------------------


def client_id_arg(value: str) -> str:
    canonical = normalize_client_id(value)
    if canonical is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a UUID")
    return canonical


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def _byte_count(value: str) -> int:
    """``67108864``, ``64MB``, ``64MiB``, ``500kB``..."""
    units = {"": 1, "kb": 1000, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    text = value.strip().lower()
    digits = text.rstrip("kmgib")
    try:
        number = float(digits) * units[text[len(digits) :]]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"{value!r} is not a byte count (e.g. 64MiB)") from None
    if not number > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return int(number)


def _byte_count_or_zero(value: str) -> int:
    return 0 if value.strip() in ("0", "off") else _byte_count(value)


def _allowed_host(value: str) -> str:
    try:
        HostPolicy([value])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def parse_allow_list(client_ids: Iterable[str] | None) -> frozenset[str] | None:
    """Normalize an allow-list of client ids (None: accept any UUID); a malformed id raises ValueError."""
    if client_ids is None:
        return None
    normalized = set()
    for raw in client_ids:
        canonical = normalize_client_id(raw)
        if canonical is None:
            raise ValueError(f"client id {raw!r} is not a UUID")
        normalized.add(canonical)
    return frozenset(normalized)


# -- sections ----------------------------------------------------------------------------------

_RETENTION = "retention (days)"


@dataclass(frozen=True)
class Retention:
    """How many days each kind of data is kept."""

    minutes: float = option(
        DEFAULT_RETENTION_DAYS,
        flag="--retention-days",
        type=_positive,
        group=_RETENTION,
        help="per-minute data (default: 30)",
    )
    hours: float = option(
        DEFAULT_HOURLY_RETENTION_DAYS,
        flag="--hourly-retention-days",
        type=_positive,
        group=_RETENTION,
        help="per-hour data (395)",
    )
    days: float = option(
        DEFAULT_DAILY_RETENTION_DAYS,
        flag="--daily-retention-days",
        type=_positive,
        group=_RETENTION,
        help="per-day data (1826)",
    )
    request_log: float = option(
        DEFAULT_REQUEST_LOG_RETENTION_DAYS,
        flag="--request-log-retention-days",
        type=_positive,
        group=_RETENTION,
        help="request log (15)",
    )
    raw_messages: float = option(
        DEFAULT_RAW_RETENTION_DAYS,
        flag="--raw-retention-days",
        type=_positive,
        group=_RETENTION,
        help="raw messages (3)",
    )
    rejections: float = DEFAULT_REJECTIONS_RETENTION_DAYS

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not value > 0:
                raise ValueError(f"retention of {name} must be positive")

    @property
    def by_resolution(self) -> dict[int, float]:
        """Seconds each aggregate resolution is kept; a coarser tier never less than a finer one."""
        minutes = self.minutes * 86400.0
        hours = max(self.hours * 86400.0, minutes)
        return {MINUTE: minutes, HOUR: hours, DAY: max(self.days * 86400.0, hours)}

    def policy(self) -> RetentionPolicy:
        longest = max(self.by_resolution.values())
        return RetentionPolicy(
            resolutions=self.by_resolution,
            request_log=self.request_log * 86400.0,
            raw_messages=self.raw_messages * 86400.0,
            rejections=self.rejections * 86400.0,
            registries=longest,
        )


_TLS = "TLS and reverse proxies"
_LIMITS = "limits"


@dataclass(frozen=True)
class Transport:
    """How uvicorn serves the app: TLS directly, which proxies' headers it believes, and the
    connection bounds (:mod:`apitally_hub.limits.connections`).

    ``forwarded_allow_ips``: addresses (comma-separated, or ``*``) whose ``X-Forwarded-For`` /
    ``X-Forwarded-Proto`` set the client address and scheme; None keeps uvicorn's default
    (``$FORWARDED_ALLOW_IPS``, else 127.0.0.1). ``header_timeout``: seconds to deliver a
    request's headers; ``keep_alive_timeout``: idle seconds between requests; ``max_connections``:
    open connections at most (None: below the fd limit,
    :func:`~apitally_hub.limits.connections.default_max_connections`).
    """

    ssl_certfile: str | None = option(
        None,
        flag="--ssl-certfile",
        metavar="PATH",
        group=_TLS,
        help="serve HTTPS with this certificate (PEM)",
    )
    ssl_keyfile: str | None = option(
        None,
        flag="--ssl-keyfile",
        metavar="PATH",
        group=_TLS,
        help="its private key (PEM), unless in the certfile",
    )
    forwarded_allow_ips: str | None = option(
        None,
        flag="--forwarded-allow-ips",
        metavar="IPS",
        group=_TLS,
        help="proxies (comma-separated, or *) whose X-Forwarded-For/-Proto headers are believed"
        " (default: $FORWARDED_ALLOW_IPS, else 127.0.0.1)",
    )
    header_timeout: float = option(
        DEFAULT_HEADER_TIMEOUT,
        flag="--header-timeout",
        type=_positive,
        metavar="SECONDS",
        group=_LIMITS,
        help="time to send a request's headers; the connection is closed after it (default: %(default)g)",
    )
    keep_alive_timeout: int = option(
        DEFAULT_KEEP_ALIVE_TIMEOUT,
        flag="--keep-alive-timeout",
        type=int,
        metavar="SECONDS",
        group=_LIMITS,
        help="idle time between requests on a connection (default: %(default)s)",
    )
    max_connections: int | None = option(
        None,
        flag="--max-connections",
        type=int,
        metavar="N",
        group=_LIMITS,
        help="open connections at most (default: the fd limit minus 256)",
    )

    def __post_init__(self) -> None:
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("--ssl-keyfile needs --ssl-certfile")
        if self.keep_alive_timeout < 1:
            raise ValueError("--keep-alive-timeout must be at least 1")
        if not self.header_timeout > 0:
            raise ValueError("timeouts must be positive")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("--max-connections must be at least 1")

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"

    def check_certificate(self) -> None:
        """Load the TLS certificate once before binding: a bad one is a one-line error, not a trace."""
        if self.ssl_certfile:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                    self.ssl_certfile, self.ssl_keyfile
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot use the TLS certificate {self.ssl_certfile!r}: {exc}") from None


# -- the whole ---------------------------------------------------------------------------------

_ACCESS = "access control"


@dataclass(frozen=True)
class HubConfig:
    """Everything one hub process is configured with."""

    db: str | Path = option(
        DEFAULT_DB,
        flag="--db",
        help="a SQLite file, or a PostgreSQL URL postgresql://user:pass@host:5432/db"
        " (default: ./apitally-hub.sqlite)",
    )
    """A SQLite file, or a ``postgresql://`` URL."""
    host: str = option("127.0.0.1", flag="--host", help="interface to bind (default: 127.0.0.1)")
    port: int = option(
        DEFAULT_PORT, flag="--port", type=int, help="port to listen on (default: 8250; 0 = any free)"
    )
    client_ids: frozenset[str] | None = option(
        None,
        flag="--client-id",
        action="append",
        type=client_id_arg,
        metavar="UUID",
        help="accept only this client id (repeatable; default: any UUID)",
    )
    tokens: tuple[str, ...] = ()
    """Admin tokens: read and change everything (none, and no viewer token: everything is open,
    and the hub binds loopback only); from ``--token``, ``--token-file`` or
    ``APITALLY_HUB_TOKEN`` (:func:`load_config`)."""
    viewer_tokens: tuple[str, ...] = option(
        (),
        flag="--viewer-token",
        action="append",
        metavar="TOKEN",
        group=_ACCESS,
        help="a viewer token: reads pages and the query API, changes nothing (repeatable; needs an"
        " admin token too)",
    )
    """Viewer tokens (also ``viewer <token>`` lines of ``--token-file``)."""
    allowed_hosts: tuple[str, ...] = option(
        (),
        flag="--allowed-host",
        action="append",
        type=_allowed_host,
        metavar="NAME",
        group=_ACCESS,
        help="a Host name to serve besides loopback and the bind address (.example.com: the domain"
        " and its subdomains; *: no Host check); repeatable",
    )
    transport: Transport = section(Transport)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    max_log_decompressed_bytes: int = DEFAULT_MAX_LOG_DECOMPRESSED_BYTES
    max_inflight_body_bytes: int = option(
        DEFAULT_MAX_INFLIGHT_BODY_BYTES,
        flag="--max-inflight-body-bytes",
        type=_byte_count,
        metavar="BYTES",
        group=_LIMITS,
        help="request bodies held at once, all clients together; over it ingest answers 503 (default: 64MiB)",
    )
    ingest_rate: float = option(
        DEFAULT_INGEST_RATE,
        flag="--ingest-rate",
        type=_byte_count_or_zero,
        metavar="BYTES",
        group=_LIMITS,
        help="bytes per second one client id may send on average; over it 429 (default: 4MiB; 0: off)",
    )
    ingest_burst: float = option(
        DEFAULT_INGEST_BURST,
        flag="--ingest-burst",
        type=_byte_count,
        metavar="BYTES",
        group=_LIMITS,
        help="bytes one client id may send at once (default: 256MiB)",
    )
    body_timeout: float = option(
        DEFAULT_BODY_TIMEOUT,
        flag="--body-timeout",
        type=_positive,
        metavar="SECONDS",
        group=_LIMITS,
        help="time to send a whole request body; 408 after it (default: %(default)g)",
    )
    max_queue_lag: float = option(
        DEFAULT_MAX_QUEUE_LAG,
        flag="--max-queue-lag",
        type=_positive,
        metavar="SECONDS",
        group=_LIMITS,
        help="when folding falls this far behind, the clients that caused it get 503 (default: 30)",
    )
    """Seconds folding may fall behind before the clients causing it get 503 (inf: never)."""
    otlp_span_hold: float = option(
        held.DEFAULT_HOLD_SECONDS,
        flag="--otlp-span-hold",
        type=_positive,
        metavar="SECONDS",
        group=_LIMITS,
        help="how long request counts from an OTLP sender's spans wait for its HTTP metrics, which"
        " count it instead when they come (default: %(default)g)",
    )
    retention: Retention = section(Retention)
    prune_interval: float = DEFAULT_PRUNE_INTERVAL
    allow_extra_fields: bool = option(
        False,
        flag="--allow-extra-fields",
        action="store_true",
        help="ignore unknown message fields instead of rejecting them",
    )
    default_sync_interval: float = DEFAULT_SYNC_INTERVAL
    fold_in_background: bool = True
    """Run the folding worker (tests that fold by hand turn it off)."""
    fold_in_subprocess: bool = False
    """Fold in a child process (:mod:`.ingest.fold_process`) instead of a thread: what ``apitally-otel
    hub`` does, so folding never competes with the event loop for the GIL."""
    alerting: AlertingConfig = section(AlertingConfig)
    log_level: str = option(
        "info", flag="--log-level", choices=("debug", "info", "warning", "error"), help="how much to log"
    )

    def __post_init__(self) -> None:
        # Accept what a caller naturally has (a list of ids, a path as text) and keep one form.
        if isinstance(self.db, str) and "://" not in self.db:
            object.__setattr__(self, "db", Path(self.db))
        if self.client_ids is not None and not isinstance(self.client_ids, frozenset):
            object.__setattr__(self, "client_ids", parse_allow_list(self.client_ids))
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "viewer_tokens", tuple(self.viewer_tokens))
        if self.viewer_tokens and not self.tokens:
            raise ValueError("viewer tokens need an admin token too (--token): nobody could change anything")
        if set(self.tokens) & set(self.viewer_tokens):
            raise ValueError("a token is both an admin token and a viewer token")
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        for name in (
            "max_body_bytes",
            "max_log_bytes",
            "max_log_decompressed_bytes",
            "max_inflight_body_bytes",
            "ingest_burst",
            "body_timeout",
            "max_queue_lag",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.ingest_rate < 0:
            raise ValueError("ingest_rate must not be negative")
        if self.prune_interval <= 0:
            raise ValueError("prune_interval must be positive")

    @property
    def retention_seconds(self) -> float:
        """How old a sync's timestamp may be: what the finest aggregates keep (clients resend for an hour)."""
        return self.retention.by_resolution[MINUTE]

    def is_allowed(self, client_id: str) -> bool:
        return self.client_ids is None or client_id in self.client_ids


# -- the command line --------------------------------------------------------------------------


def _flags(kind: type[Any]) -> Iterable[tuple[str, Flag, Any]]:
    """``(field name, flag, default)`` of every field of ``kind`` and its sections that has a flag."""
    for item in fields(kind):
        if SECTION in item.metadata:
            yield from _flags(item.metadata[SECTION])
        elif FLAG in item.metadata:
            yield item.name, item.metadata[FLAG], item.default


def _dest(spec: Flag) -> str:
    return spec.name.lstrip("-").replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add an option for every configuration field that has a flag, and ``--token``/``--token-file``."""
    groups: dict[str, Any] = {}
    access = groups[_ACCESS] = parser.add_argument_group(
        _ACCESS,
        "Pages and the API need a bearer token (or a dashboard login) when one is configured;"
        " without one the hub binds loopback only. Admin tokens (read and change everything):"
        " --token and --token-file, else APITALLY_HUB_TOKEN (comma-separated); viewer tokens"
        " (read only): --viewer-token and 'viewer <token>' lines of --token-file.",
    )
    access.add_argument("--token", action="append", metavar="TOKEN", help="an admin token (repeatable)")
    access.add_argument(
        "--token-file",
        metavar="PATH",
        help="read tokens from a file, one per line: '<token>' or 'admin <token>' (admin),"
        " 'viewer <token>' (viewer)",
    )
    groups[_TLS] = parser.add_argument_group(_TLS)
    groups[_LIMITS] = parser.add_argument_group(
        _LIMITS, "What clients can make the hub hold (docs/hub-protocol.md §8)."
    )
    groups[_RETENTION] = parser.add_argument_group(_RETENTION)
    for _, spec, default in _flags(HubConfig):
        target = (
            parser
            if spec.group is None
            else groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        )
        options: dict[str, Any] = {"dest": _dest(spec), "help": spec.help}
        if spec.action == "store_true":
            options["action"] = "store_true"
        else:
            options.update(type=spec.type, metavar=spec.metavar, choices=spec.choices)
            if spec.action == "append":
                options["action"] = "append"
            else:
                options["default"] = default
        target.add_argument(spec.name, **options)


def _section(kind: type[Any], args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in fields(kind):
        if SECTION in item.metadata:
            sub = item.metadata[SECTION]
            values[item.name] = sub(**_section(sub, args))
        elif FLAG in item.metadata:
            value = getattr(args, _dest(item.metadata[FLAG]), None)
            if value is None and item.default is not MISSING:
                continue  # an ``append`` option never given: the field's default
            values[item.name] = tuple(value) if isinstance(value, list) else value
    return values


def load_config(args: argparse.Namespace, environ: Mapping[str, str]) -> HubConfig:
    """The hub's configuration from ``apitally-otel hub``'s arguments and the environment; raises
    :class:`ConfigError` for anything the hub will not start with (before it binds or logs)."""
    try:
        values = _section(HubConfig, args)
        viewers = values.pop("viewer_tokens", None)
        for token in viewers or ():
            check_token(token, "--viewer-token")
        values["tokens"], values["viewer_tokens"] = resolve_token_roles(
            args.token, args.token_file, environ, viewers
        )
        config = HubConfig(**values, fold_in_subprocess=True)  # keep folding off the event loop's GIL
    except (TokenError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    config.transport.check_certificate()
    rules_file = config.alerting.rules_file
    if rules_file is not None:
        try:
            rulesfile.load(rules_file, time.time())
        except rulesfile.RulesFileError as exc:
            raise ConfigError(str(exc)) from None
    return config


__all__ = [
    "ConfigError",
    "HubConfig",
    "Retention",
    "Transport",
    "add_arguments",
    "load_config",
    "parse_allow_list",
]
