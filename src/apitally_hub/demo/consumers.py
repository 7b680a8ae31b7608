"""Who calls the demo API: the traffic generator (:mod:`.traffic`) and the demo app.

The demo app (:mod:`.app`, run in its own process) gets them from the runner in the
``APITALLY_DEMO_CONSUMERS`` environment variable.
"""

from __future__ import annotations

import json

API_KEYS: dict[str, tuple[str, str]] = {
    "ak_live_acme_7f3a": ("Acme Corp", "Enterprise"),
    "ak_live_globex_91c2": ("Globex", "Enterprise"),
    "ak_live_initech_55d0": ("Initech", "Startups"),
    "ak_live_hooli_23b8": ("Hooli", "Startups"),
}
"""``X-Api-Key`` value -> (name, group); the app identifies these with ``set_consumer``."""

REVOKED_API_KEY = "ak_live_revoked_0000"
"""Not in :data:`API_KEYS`: the app answers 401 and identifies no consumer."""

CLIENT_APPS: dict[str, tuple[str, str]] = {
    "ios-app": ("iOS app", "Mobile"),
    "android-app": ("Android app", "Mobile"),
    "partner-portal": ("Partner portal", "Partners"),
}
"""``X-Consumer`` value -> (name, group); the app's ``consumer_callback`` identifies these."""


def consumer_tables_json() -> str:
    """The tables for the demo app, which reads them from ``APITALLY_DEMO_CONSUMERS``."""
    return json.dumps({"api_keys": API_KEYS, "client_apps": CLIENT_APPS})
