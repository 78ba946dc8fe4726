"""Names the decorator derives from the environment: the default destination schema and the asset URIs."""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import urlsplit

from cdc_sync.airflow.compat import webserver_base_url

SCHEMA_PREFIX = "airflow"
# An RFC 3986 scheme may not contain "_", so the package's name is spelled with a hyphen here.
ASSET_SCHEME = "cdc-sync"


def environment_slug() -> str | None:
    """``DATACOVES__ENVIRONMENT_SLUG`` if set, else the first label of the UI's base URL host
    (``https://dev123.example.com`` → ``dev123``); None for a bare host, ``localhost`` or an IP address."""
    slug = os.environ.get("DATACOVES__ENVIRONMENT_SLUG", "").strip()
    if slug:
        return slug.lower()
    host = urlsplit(webserver_base_url() or "").hostname
    if not host or "." not in host or host == "localhost":
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return host.split(".", 1)[0].lower()


def default_destination_schema() -> str:
    """``airflow-{environment slug}``, or ``airflow`` when the environment names none."""
    slug = environment_slug()
    return f"{SCHEMA_PREFIX}-{re.sub(r'[^a-z0-9_-]', '-', slug)}" if slug else SCHEMA_PREFIX


def table_asset_uri(schema: str, table: str) -> str:
    """The asset (dataset) a synced table is published as: ``cdc-sync://{schema}/{table}``."""
    return f"{ASSET_SCHEME}://{schema}/{table}"
