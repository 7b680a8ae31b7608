"""The apps registry as the JSON API, the dashboard and the CLI use it: one validation of an
app's fields (:func:`parse_app_fields`), creating, renaming and deleting apps, and one app's view
(its registry entry and, per env, whether data has arrived).

An app that reports without having been created is an app too: it has no registry row until it
is named (:func:`update_app` creates the row, with the envs it reported).

Write tokens (OTLP ingest's per-app credentials, ``apt_`` and 24 letters or digits): creating an
app creates its first, and so does naming an app that only reported; more can be created, and any
revoked (:func:`create_write_token`, :func:`revoke_write_token`). They are secrets: views show
them only when asked to (``with_tokens``, for admins).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from apitally_hub.protocol.checker import FieldError
from apitally_hub.protocol.messages import is_valid_env
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import FRAMEWORKS, AppInfo, AppRecord, WriteToken

MAX_NAME = 100
MAX_ENVS = 20
FIELDS = ("name", "framework", "envs")
_ENV_SEPARATORS = re.compile(r"[\s,]+")


class InvalidApp(ValueError):
    """Fields an app cannot have; ``errors`` names each (``loc`` ``["body", <field>]``)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.loc[-1]}: {e.msg}" for e in errors))
        self.errors = errors

    def by_field(self) -> dict[str, str]:
        """Field name -> message (the dashboard's form shows each next to its field)."""
        return {str(e.loc[-1]): e.msg for e in self.errors}


def split_envs(text: str) -> list[str]:
    """``"prod, dev"`` or ``"prod dev"`` -> ``["prod", "dev"]``."""
    return [env for env in _ENV_SEPARATORS.split(text) if env]


def parse_app_fields(body: Any, *, partial: bool) -> dict[str, Any]:
    """The fields of ``body`` (a JSON object: ``name``, ``framework``, ``envs`` — a list, or one
    string of names separated by commas or spaces), checked; raises :class:`InvalidApp`.
    ``partial``: the fields missing from ``body`` are left out (an update), else required."""
    if not isinstance(body, Mapping):
        raise InvalidApp([FieldError(("body",), "Should be a JSON object", "model_type")])
    errors: list[FieldError] = []
    fields: dict[str, Any] = {}
    for key in body:
        if key not in FIELDS:
            errors.append(FieldError(("body", str(key)), "Unknown field", "extra_forbidden"))
    for key in FIELDS:
        if key not in body and not partial:
            errors.append(FieldError(("body", key), "Field required", "missing"))
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip():
            errors.append(FieldError(("body", "name"), "Give the app a name", "string_too_short"))
        elif len(name.strip()) > MAX_NAME or not name.isprintable():
            errors.append(
                FieldError(
                    ("body", "name"), f"Should be printable text of at most {MAX_NAME} characters", "string"
                )
            )
        else:
            fields["name"] = name.strip()
    if "framework" in body:
        framework = body["framework"]
        if framework not in FRAMEWORKS:
            errors.append(
                FieldError(("body", "framework"), f"Should be one of {', '.join(FRAMEWORKS)}", "enum")
            )
        else:
            fields["framework"] = framework
    if "envs" in body:
        raw = body["envs"]
        envs = split_envs(raw) if isinstance(raw, str) else raw
        if not isinstance(envs, list) or not all(isinstance(env, str) for env in envs):
            errors.append(FieldError(("body", "envs"), "Should be a list of env names", "list_type"))
        elif not envs:
            errors.append(FieldError(("body", "envs"), "Give at least one environment", "too_short"))
        elif bad := [env for env in envs if not is_valid_env(env)]:
            errors.append(
                FieldError(
                    ("body", "envs"),
                    f"Not an env name: {bad[0][:40]!r} (1-32 letters, digits, _ or -)",
                    "string_pattern_mismatch",
                )
            )
        elif len(set(envs)) > MAX_ENVS:
            errors.append(FieldError(("body", "envs"), f"At most {MAX_ENVS} environments", "too_long"))
        else:
            fields["envs"] = tuple(dict.fromkeys(envs))
    if errors:
        raise InvalidApp(errors)
    return fields


def create_app(storage: Storage, body: Any, *, now: float) -> tuple[AppRecord, WriteToken]:
    """A new app with a new random client id, and its first write token; raises :class:`InvalidApp`."""
    fields = parse_app_fields(body, partial=False)
    record = AppRecord(str(uuid.uuid4()), fields["name"], fields["framework"], fields["envs"], now, now)
    storage.put_app(record)
    token = WriteToken.generate(record.client_id, now)
    storage.add_write_token(token)
    return record, token


def reported(storage: Storage, client_id: str) -> list[AppInfo]:
    """The envs of ``client_id`` that have reported (their instances)."""
    return [info for info in storage.list_apps() if info.app.client_id == client_id]


def update_app(storage: Storage, client_id: str, body: Any, *, now: float) -> AppRecord | None:
    """Change the app's name, framework or envs (the fields given); an app that only reported so
    far gets its registry row (it needs a name). None: no such app. Raises :class:`InvalidApp`."""
    fields = parse_app_fields(body, partial=True)
    record = storage.app_record(client_id)
    named = record is None
    if record is None:
        infos = reported(storage, client_id)
        if not infos:
            return None
        if "name" not in fields:
            raise InvalidApp([FieldError(("body", "name"), "Give the app a name", "missing")])
        record = AppRecord(client_id, "", "other", tuple(info.app.env for info in infos), now, now)
    updated = AppRecord(
        client_id,
        fields.get("name", record.name),
        fields.get("framework", record.framework),
        fields.get("envs", record.envs),
        record.created_at,
        now,
    )
    storage.put_app(updated)
    if named and not storage.write_tokens(client_id):
        storage.add_write_token(WriteToken.generate(client_id, now))
    return updated


def delete_app(storage: Storage, client_id: str) -> dict[str, int] | None:
    """Delete the app and all its data (every env); None: the hub held nothing of it."""
    deleted = storage.delete_app(client_id)
    return deleted or None


def app_exists(storage: Storage, client_id: str) -> bool:
    """Whether ``client_id`` is an app: of the registry, or one that reported."""
    return storage.app_record(client_id) is not None or bool(reported(storage, client_id))


def token_view(token: WriteToken) -> dict[str, Any]:
    return {"token": token.token, "created_at": token.created_at, "revoked_at": token.revoked_at}


def write_tokens(storage: Storage, client_id: str) -> list[WriteToken] | None:
    """The app's write tokens, revoked ones too, oldest first; None: no such app."""
    if not app_exists(storage, client_id):
        return None
    return storage.write_tokens(client_id)


def create_write_token(storage: Storage, client_id: str, *, now: float) -> WriteToken | None:
    """Another write token of the app; None: no such app."""
    if not app_exists(storage, client_id):
        return None
    token = WriteToken.generate(client_id, now)
    storage.add_write_token(token)
    return token


def parse_token_body(body: Any) -> str:
    """The ``token`` of a revocation's body (``{"token": "apt_..."}``); raises :class:`InvalidApp`."""
    if not isinstance(body, Mapping):
        raise InvalidApp([FieldError(("body",), "Should be a JSON object", "model_type")])
    errors = [
        FieldError(("body", str(key)), "Unknown field", "extra_forbidden") for key in body if key != "token"
    ]
    token = body.get("token")
    if not isinstance(token, str) or not token:
        errors.append(FieldError(("body", "token"), "Give the write token to revoke", "missing"))
    if errors:
        raise InvalidApp(errors)
    return str(token)


def revoke_write_token(storage: Storage, client_id: str, token: str, *, now: float) -> WriteToken | None:
    """Revoke the app's ``token`` (revoking it again changes nothing); None: the app has no such
    token. OTLP ingest caches a token's app for a few seconds: it is refused within them."""
    if not WriteToken.is_well_formed(token) or not storage.revoke_write_token(client_id, token, now):
        return None
    return next((t for t in storage.write_tokens(client_id) if t.token == token), None)


def app_view(storage: Storage, client_id: str, *, with_tokens: bool = False) -> dict[str, Any] | None:
    """The app as the API shows it: its registry fields (``registered`` false and ``name`` null for
    an app that only reported) and its ``envs`` — registered and reported — each with whether data
    has arrived (``has_data``), its instances and last sync; ``with_tokens``: and its
    ``write_tokens`` (secrets: for admins only). None: no such app."""
    record = storage.app_record(client_id)
    infos = {info.app.env: info for info in reported(storage, client_id)}
    if record is None and not infos:
        return None
    names = list(record.envs if record is not None else ())
    names += [env for env in sorted(infos) if env not in names]
    envs = []
    for env in names:
        info = infos.get(env)
        envs.append(
            {
                "env": env,
                "registered": record is not None and env in record.envs,
                "has_data": info is not None,
                "instances": info.instances if info else 0,
                "first_seen": info.first_seen if info else None,
                "last_seen": info.last_seen if info else None,
                "last_sync_at": info.last_sync_at if info else None,
            }
        )
    view: dict[str, Any] = {
        "client_id": client_id,
        "name": record.name if record else None,
        "framework": record.framework if record else None,
        "registered": record is not None,
        "created_at": record.created_at if record else None,
        "updated_at": record.updated_at if record else None,
        "envs": envs,
    }
    if with_tokens:
        view["write_tokens"] = [token_view(token) for token in storage.write_tokens(client_id)]
    return view
