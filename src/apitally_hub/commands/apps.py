"""``apitally-otel apps list|create|rename|delete|write-tokens|write-token-create|write-token-revoke``:
manage a hub's apps and their write tokens over its JSON API.

    apitally-otel apps list
    apitally-otel apps create --name Shop --framework fastapi --env prod --env dev --json
    apitally-otel apps rename UUID "Shop API"
    apitally-otel apps delete UUID --yes        # the app and all its data, every env
    apitally-otel apps write-tokens UUID        # its write tokens (OTLP ingest), revoked ones too
    apitally-otel apps write-token-create UUID  # prints a new one
    apitally-otel apps write-token-revoke UUID apt_...

``--hub`` (default http://127.0.0.1:8250) and ``--token`` (default ``$APITALLY_HUB_TOKEN``, sent as
a bearer token) say where and as whom; changes need an admin token.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from apitally_hub.commands.hub_api import CLIError, HubApi
from apitally_hub.config import client_id_arg

Subparsers = Any


def register(subparsers: Subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hub", default="http://127.0.0.1:8250", help="hub base URL (default: %(default)s)")
    common.add_argument("--token", default=None, help="the hub's token (default: $APITALLY_HUB_TOKEN)")
    common.add_argument("--json", action="store_true", help="print JSON")
    apps = subparsers.add_parser(
        "apps", help="list, create, rename and delete the apps of a hub, and manage their write tokens"
    )
    actions = apps.add_subparsers(dest="apps_action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="the apps and their envs")
    create = actions.add_parser("create", parents=[common], help="a new app (prints its client id)")
    create.add_argument("--name", required=True)
    create.add_argument("--framework", choices=["starlette", "fastapi", "other"], default="other")
    create.add_argument(
        "--env", action="append", dest="envs", required=True, help="an environment (repeatable)"
    )
    rename = actions.add_parser("rename", parents=[common], help="give an app a new name")
    rename.add_argument("client_id", type=client_id_arg, metavar="UUID")
    rename.add_argument("name")
    delete = actions.add_parser("delete", parents=[common], help="delete an app and all its data")
    delete.add_argument("client_id", type=client_id_arg, metavar="UUID")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    tokens = actions.add_parser(
        "write-tokens", parents=[common], help="an app's write tokens (OTLP ingest), revoked ones too"
    )
    tokens.add_argument("client_id", type=client_id_arg, metavar="UUID")
    token_create = actions.add_parser(
        "write-token-create", parents=[common], help="a new write token for an app (prints it)"
    )
    token_create.add_argument("client_id", type=client_id_arg, metavar="UUID")
    token_revoke = actions.add_parser("write-token-revoke", parents=[common], help="revoke a write token")
    token_revoke.add_argument("client_id", type=client_id_arg, metavar="UUID")
    token_revoke.add_argument("write_token", metavar="TOKEN")  # not "token": --token is the hub's
    apps.set_defaults(handler=run)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _list(api: HubApi, args: argparse.Namespace) -> int:
    apps: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.call("GET", "/api/apps?limit=1000" + (f"&cursor={cursor}" if cursor else ""))
        apps += page["apps"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    if args.json:
        print(json.dumps({"apps": apps}, indent=2))
        return 0
    rows = [["CLIENT ID", "NAME", "FRAMEWORK", "ENV", "INSTANCES", "DATA"]]
    for app in apps:
        rows.append(
            [
                app["client_id"],
                app["name"] or "-",
                app["framework"] or "-",
                app["env"],
                str(app["instances"]),
                "yes" if app["last_seen"] is not None else "waiting",
            ]
        )
    _table(rows) if apps else print("no apps")
    return 0


def _create(api: HubApi, args: argparse.Namespace) -> int:
    body = {"name": args.name, "framework": args.framework, "envs": args.envs}
    app = api.call("POST", "/api/apps", body, expect=(201,))
    if args.json:
        print(json.dumps(app, indent=2))
    else:
        print(f"app {app['name']!r} created: client id {app['client_id']}, write token {app['write_token']}")
    return 0


def _rename(api: HubApi, args: argparse.Namespace) -> int:
    app = api.call("PATCH", f"/api/apps/{args.client_id}", {"name": args.name})
    print(json.dumps(app, indent=2) if args.json else f"app {app['client_id']} renamed to {app['name']!r}")
    return 0


def _delete(api: HubApi, args: argparse.Namespace) -> int:
    if not args.yes:
        app = api.call("GET", f"/api/apps/{args.client_id}")
        label = app["name"] or app["client_id"]
        answer = input(f"Delete {label!r} and all its data in every env? Type its name to confirm: ")
        if answer.strip() != label:
            print("not deleted", file=sys.stderr)
            return 1
    deleted = api.call("DELETE", f"/api/apps/{args.client_id}")
    if args.json:
        print(json.dumps(deleted, indent=2))
    else:
        print(f"app {args.client_id} deleted ({sum(deleted['deleted'].values())} rows)")
    return 0


def _utc(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _write_tokens(api: HubApi, args: argparse.Namespace) -> int:
    app = api.call("GET", f"/api/apps/{args.client_id}")
    if "write_tokens" not in app:
        raise CLIError("the hub shows write tokens to an admin token only")
    tokens = app["write_tokens"]
    if args.json:
        print(json.dumps({"client_id": args.client_id, "write_tokens": tokens}, indent=2))
        return 0
    rows = [["TOKEN", "CREATED", "REVOKED"]]
    rows += [[t["token"], _utc(t["created_at"]), _utc(t["revoked_at"])] for t in tokens]
    _table(rows) if tokens else print("no write tokens")
    return 0


def _write_token_create(api: HubApi, args: argparse.Namespace) -> int:
    token = api.call("POST", f"/api/apps/{args.client_id}/write-tokens", {}, expect=(201,))
    print(json.dumps(token, indent=2) if args.json else token["token"])
    return 0


def _write_token_revoke(api: HubApi, args: argparse.Namespace) -> int:
    path = f"/api/apps/{args.client_id}/write-tokens/revoke"
    token = api.call("POST", path, {"token": args.write_token})
    print(json.dumps(token, indent=2) if args.json else f"write token {token['token']} revoked")
    return 0


ACTIONS = {
    "list": _list,
    "create": _create,
    "rename": _rename,
    "delete": _delete,
    "write-tokens": _write_tokens,
    "write-token-create": _write_token_create,
    "write-token-revoke": _write_token_revoke,
}


def run(args: argparse.Namespace) -> int:
    action = ACTIONS[args.apps_action]
    api = HubApi(args)
    try:
        return action(api, args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        api.http.close()
