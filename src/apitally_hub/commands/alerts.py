"""``apitally-otel alerts list|add|rm|test``: manage a hub's alerting over its JSON API.

    apitally-otel alerts list --client-id UUID --env prod
    apitally-otel alerts add channel --client-id UUID --name ops --type webhook --url https://...
    apitally-otel alerts add rule --client-id UUID --name 5xx --metric server_errors \\
        --condition '>' --threshold 0 --window 5 --channel ops
    apitally-otel alerts add silence --client-id UUID --rule 5xx --minutes 60 --comment deploy
    apitally-otel alerts test ops --client-id UUID      # a test notification (channel or rule)
    apitally-otel alerts rm rule 5xx --client-id UUID

Channels and rules may be named by id or by name. ``--hub`` (default http://127.0.0.1:8250) and
``--token`` (default ``$APITALLY_HUB_TOKEN``, sent as a bearer token) say where and as whom.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from apitally_hub.commands.hub_api import CLIError, HubApi
from apitally_hub.config import client_id_arg

Subparsers = Any


def register(subparsers: Subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hub", default="http://127.0.0.1:8250", help="hub base URL (default: %(default)s)")
    common.add_argument("--token", default=None, help="the hub's token (default: $APITALLY_HUB_TOKEN)")
    common.add_argument("--client-id", required=True, type=client_id_arg, metavar="UUID")
    common.add_argument("--env", default="dev")
    common.add_argument("--json", action="store_true", help="print JSON")
    alerts = subparsers.add_parser(
        "alerts", help="list, add, remove and test alert rules and channels of a hub"
    )
    actions = alerts.add_subparsers(dest="alerts_action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="channels, rules, alerts and silences")
    add = actions.add_parser("add", help="add a rule, channel or silence")
    kinds = add.add_subparsers(dest="kind", required=True, metavar="KIND")
    rule = kinds.add_parser("rule", parents=[common], help="an alert rule")
    rule.add_argument("--name")
    rule.add_argument("--metric")
    rule.add_argument("--condition", choices=[">", ">=", "<", "<="])
    rule.add_argument("--threshold", type=float)
    rule.add_argument("--window", type=float, dest="window_minutes", help="window in minutes (1-60)")
    rule.add_argument("--for", type=float, dest="for_minutes", help="pending period in minutes")
    rule.add_argument("--keep-firing", type=float, dest="keep_firing_minutes")
    rule.add_argument(
        "--repeat", type=float, dest="repeat_minutes", help="reminders every N minutes (0: none)"
    )
    rule.add_argument("--no-data", choices=["keep", "ok", "alerting"])
    rule.add_argument("--channel", action="append", dest="channels", help="channel id or name (repeatable)")
    rule.add_argument(
        "--scope", help='scope as JSON, e.g. \'{"path_pattern": "/api/*", "for_each": "endpoint"}\''
    )
    rule.add_argument("--body", help="the whole rule as JSON (the other options override its fields)")
    channel = kinds.add_parser("channel", parents=[common], help="a notification channel")
    channel.add_argument("--name")
    channel.add_argument("--type", choices=["webhook", "slack", "teams", "email"])
    channel.add_argument("--url")
    channel.add_argument("--secret")
    channel.add_argument("--body", help="the whole channel as JSON (email: smtp_host, to, ...)")
    silence = kinds.add_parser(
        "silence", parents=[common], help="mute a rule (or the whole app env) for a while"
    )
    silence.add_argument("--rule", help="rule id or name (default: every rule of the app env)")
    silence.add_argument("--minutes", type=float, required=True)
    silence.add_argument("--comment", default="")
    rm = actions.add_parser("rm", parents=[common], help="remove a rule, channel or silence")
    rm.add_argument("kind", choices=["rule", "channel", "silence"])
    rm.add_argument("target", help="id (or name, for rules and channels)")
    test = actions.add_parser(
        "test", parents=[common], help="send a test notification to a channel or a rule's channels"
    )
    test.add_argument("target", help="channel or rule, by id or name")
    test.add_argument("--no-wait", action="store_true", help="do not wait for the delivery")
    alerts.set_defaults(handler=run)


class _Api(HubApi):
    """The alerting API of one app env."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, f"/api/{args.client_id}/{args.env}")

    def find(self, kind: str, target: str) -> dict[str, Any] | None:
        items = (
            self.call("GET", "/alert-rules")["rules"]
            if kind == "rule"
            else self.call("GET", "/channels")["channels"]
        )
        for item in items:
            if target in (item["id"], item["name"]):
                return dict(item)
        return None

    def resolve(self, kind: str, target: str) -> str:
        found = self.find(kind, target)
        if found is None:
            raise CLIError(f"no {kind} {target!r}")
        return str(found["id"])


def _table(rows: list[list[str]], out: Any) -> None:
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out
        )


def _list(api: _Api, args: argparse.Namespace) -> int:
    data = {
        "channels": api.call("GET", "/channels")["channels"],
        "rules": api.call("GET", "/alert-rules")["rules"],
        "alerts": [a for a in api.call("GET", "/alerts")["alerts"] if a["state"] != "normal"],
        "silences": [s for s in api.call("GET", "/silences")["silences"] if s["active"]],
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    out = sys.stdout
    print("Channels", file=out)
    _table(
        [["ID", "NAME", "TYPE", "SOURCE"]]
        + [[c["id"], c["name"], c["type"], c["source"]] for c in data["channels"]],
        out,
    )
    print("\nRules", file=out)
    rows = [["ID", "NAME", "CONDITION", "WINDOW", "FOR", "FIRING", "SOURCE"]]
    for r in data["rules"]:
        condition = f"{r['metric']} {r['condition']} {r['threshold']:g}"
        rows.append(
            [
                r["id"],
                r["name"],
                condition,
                f"{r['window_minutes']:g}m",
                f"{r['for_minutes']:g}m",
                str(r["alerts"]["firing"]),
                r["source"],
            ]
        )
    _table(rows, out)
    print("\nActive alerts", file=out)
    rows = [["RULE", "STATE", "VALUE", "LABELS", "SINCE"]]
    for a in data["alerts"]:
        since = a["firing_since"] or a["pending_since"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(since)) if since else "-"
        labels = ", ".join(f"{k}={v}" for k, v in a["labels"].items()) or "-"
        rows.append([a["rule_name"] or a["rule_id"], a["state"], str(a["value"]), labels, when])
    _table(rows, out) if len(rows) > 1 else print("  none", file=out)
    if data["silences"]:
        print("\nSilences", file=out)
        _table(
            [["ID", "RULE", "ENDS"]]
            + [
                [s["id"], s["rule_id"] or "(all)", time.strftime("%Y-%m-%d %H:%M", time.gmtime(s["ends_at"]))]
                for s in data["silences"]
            ],
            out,
        )
    return 0


def _body(args: argparse.Namespace, fields: tuple[str, ...]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(args.body) if getattr(args, "body", None) else {}
    for name in fields:
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    return body


def _add(api: _Api, args: argparse.Namespace) -> int:
    if args.kind == "channel":
        created = api.call("POST", "/channels", _body(args, ("name", "type", "url", "secret")), expect=(201,))
    elif args.kind == "rule":
        body = _body(
            args,
            (
                "name",
                "metric",
                "condition",
                "threshold",
                "window_minutes",
                "for_minutes",
                "keep_firing_minutes",
                "repeat_minutes",
            ),
        )
        if args.no_data:
            body["no_data"] = args.no_data
        if args.scope:
            body["scope"] = json.loads(args.scope)
        if args.channels:
            body["channels"] = [api.resolve("channel", c) for c in args.channels]
        created = api.call("POST", "/alert-rules", body, expect=(201,))
    else:
        body = {"minutes": args.minutes, "comment": args.comment}
        if args.rule:
            body["rule_id"] = api.resolve("rule", args.rule)
        created = api.call("POST", "/silences", body, expect=(201,))
    print(json.dumps(created, indent=2) if args.json else f"{args.kind} {created['id']} added")
    return 0


def _rm(api: _Api, args: argparse.Namespace) -> int:
    target = args.target if args.kind == "silence" else api.resolve(args.kind, args.target)
    path = {"rule": "/alert-rules/", "channel": "/channels/", "silence": "/silences/"}[args.kind]
    api.call("DELETE", path + target, expect=(204,))
    print(f"{args.kind} {target} removed")
    return 0


def _test(api: _Api, args: argparse.Namespace) -> int:
    rule = api.find("rule", args.target)
    if rule is not None:
        ids = api.call("POST", f"/alert-rules/{rule['id']}/test", expect=(202,))["notification_ids"]
    else:
        ids = api.call("POST", f"/channels/{api.resolve('channel', args.target)}/test", expect=(202,))[
            "notification_ids"
        ]
    if args.no_wait:
        print(f"queued {len(ids)} test notification(s): {', '.join(ids)}")
        return 0
    deadline, failed = time.monotonic() + 60, False
    for notification_id in ids:
        while True:
            status = api.call("GET", f"/notifications/{notification_id}")
            if status["status"] != "pending" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        print(
            f"{notification_id}: {status['status']} after {status['attempts']} attempt(s)"
            + (f" ({status['last_error']})" if status["last_error"] else "")
        )
        failed = failed or status["status"] != "sent"
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    action = {"list": _list, "add": _add, "rm": _rm, "test": _test}[args.alerts_action]
    api = _Api(args)
    try:
        return action(api, args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"error: --body/--scope is not valid JSON: {exc}", file=sys.stderr)
        return 2
    finally:
        api.http.close()
