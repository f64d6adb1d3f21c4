"""Which NeMo API generation a server speaks: ``v1`` (NeMo Microservices 25.x), ``v2`` (NeMo Platform 26.x /
nemo-helix). Chosen by configuration (``EMBED_FT_NEMO_API=v1|v2|auto``); ``auto`` probes once and says what it found.
"""

from __future__ import annotations

import logging
from typing import Literal

import requests

from .contract import ENTITIES

log = logging.getLogger("embed_ft.nemo")

Profile = Literal["v1", "v2"]
PROFILES = ("v1", "v2", "auto")


def probe(base_url: str, timeout: tuple[float, float] = (3.0, 10.0)) -> Profile:
    """``v2`` when the server lists v2 workspaces, ``v1`` when it lists v1 namespaces; raises when neither answers."""
    base = base_url.rstrip("/")
    answers: dict[str, str] = {}
    for profile, path in (("v2", f"{ENTITIES}/workspaces"), ("v1", "/v1/namespaces")):
        try:
            response = requests.get(f"{base}{path}", params={"page_size": 1}, timeout=timeout)
        except requests.RequestException as exc:
            answers[profile] = type(exc).__name__
            continue
        if response.status_code in (200, 401, 403):  # it exists (maybe behind authentication)
            log.info("NeMo API at %s: %s (GET %s answered %d)", base, profile, path, response.status_code)
            return profile  # type: ignore[return-value]
        answers[profile] = str(response.status_code)
    raise ValueError(
        f"{base} speaks neither NeMo API: GET {ENTITIES}/workspaces -> {answers.get('v2')}, "
        f"GET /v1/namespaces -> {answers.get('v1')}; set EMBED_FT_NEMO_API=v1 or v2"
    )


def resolve(setting: str, base_url: str | None) -> Profile:
    """The profile for ``setting`` (``v1``, ``v2`` or ``auto``); ``auto`` with no URL is the local platform (v1)."""
    value = (setting or "v1").strip().lower()
    if value not in PROFILES:
        raise ValueError(f"EMBED_FT_NEMO_API must be one of {', '.join(PROFILES)}, got {setting!r}")
    if value != "auto":
        return value  # type: ignore[return-value]
    return probe(base_url) if base_url else "v1"
