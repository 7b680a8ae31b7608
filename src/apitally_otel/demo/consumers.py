"""Who calls the demo API: shared by the app (:mod:`.app`) and the traffic generator (:mod:`.traffic`).

Kept free of FastAPI imports so the traffic generator works without it.
"""

from __future__ import annotations

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
