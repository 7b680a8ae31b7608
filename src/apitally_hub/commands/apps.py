"""``apitally-otel apps list|create|rename|delete``: manage a hub's apps over its JSON API.

    apitally-otel apps list
    apitally-otel apps create --name Shop --framework fastapi --env prod --env dev --json
    apitally-otel apps rename UUID "Shop API"
    apitally-otel apps delete UUID --yes        # the app and all its data, every env

``--hub`` (default http://127.0.0.1:8250) and ``--token`` (default ``$APITALLY_HUB_TOKEN``, sent as
a bearer token) say where and as whom; changes need an admin token.
"""

from __future__ import annotations

import argparse
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
    apps = subparsers.add_parser("apps", help="list, create, rename and delete the apps of a hub")
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
        print(f"app {app['name']!r} created: client id {app['client_id']}")
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


def run(args: argparse.Namespace) -> int:
    action = {"list": _list, "create": _create, "rename": _rename, "delete": _delete}[args.apps_action]
    api = HubApi(args)
    try:
        return action(api, args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        api.http.close()
