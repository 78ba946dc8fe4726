"""The digest that replaces a hashed column's values, and the check that a mirror never mixes two kinds.

Plain SHA-256 hides nothing from someone who can guess the values: an email address or a name is found by hashing
candidates. A keyed digest (HMAC-SHA-256) cannot be recomputed without the key, so it is used whenever one is set
(``CDC_SYNC_HASH_KEY``, ``hash_key=``, or ``hash_key`` in the Airflow warehouse connection's extra). Both keep
equal values equal, so a hashed column can still be joined, grouped and counted.

Digests of two kinds, or of two keys, never match, so a column half-hashed one way and half the other would
silently break every join. Each hashed column's digest is therefore recorded in ``_cdc_meta`` with the table's
data, and a cycle whose digest differs is refused before anything is written; a resync of the table switches it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cdc_sync.errors import ConfigError

PLAIN = "sha256"
# Before digests were recorded, every hashed column held plain SHA-256.
UNRECORDED = PLAIN
MIN_KEY_LENGTH = 16
_FINGERPRINT_MESSAGE = b"cdc_sync hash key fingerprint"


@dataclass(frozen=True)
class Digest:
    """How hashed columns are digested: ``label`` names the kind (and the key, by a fingerprint) in the state."""

    label: str
    hex_digest: Callable[[bytes], str]


def digest_for(key: str | None) -> Digest:
    """HMAC-SHA-256 under ``key`` when there is one, else plain SHA-256."""
    if key is None:
        return Digest(PLAIN, lambda value: hashlib.sha256(value).hexdigest())
    secret = key.encode()
    # A digest of a fixed text under the key: tells two keys apart, and without the key tells nothing.
    fingerprint = hmac.new(secret, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]
    return Digest(f"hmac-sha256 key {fingerprint}",
                  lambda value: hmac.new(secret, value, hashlib.sha256).hexdigest())


def validate_key(key: str | None) -> str | None:
    """The hash key as given, or a :class:`ConfigError` for one too short to resist guessing."""
    if key is None or key == "":
        return None
    if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"The hash key (CDC_SYNC_HASH_KEY or hash_key) must be a text of at least {MIN_KEY_LENGTH} characters: a "
            "short key can be guessed like the values it protects. Use e.g. `openssl rand -hex 32`."
        )
    return key


def meta_key(table: str, column: str) -> str:
    """The ``_cdc_meta`` key under which a hashed column's digest is recorded."""
    return f"digest:{table}.{column}"


def digest_switches(hashed: Mapping[str, Iterable[str]], recorded: Mapping[str, str], mirrored: Iterable[str],
                    digest: Digest, *, resync: bool) -> set[str]:
    """The tables whose hashed columns would change digest in this cycle.

    ``hashed`` maps each table to its hashed columns, ``recorded`` is ``_cdc_meta``'s digests, ``mirrored`` the
    tables that already have a mirror. Outside a resync a switch is refused: a :class:`ConfigError` that names the
    columns and the fix. In a resync those tables are emptied and re-read, so every row takes the new digest."""
    mirrored = set(mirrored)
    switches: dict[str, list[str]] = {}
    for table, columns in hashed.items():
        for column in sorted(columns):
            before = recorded.get(meta_key(table, column), UNRECORDED if table in mirrored else None)
            if before is not None and before != digest.label:
                switches.setdefault(table, []).append(f"{table}.{column} ({before})")
    if switches and not resync:
        columns = ", ".join(column for found in switches.values() for column in found)
        tables = " ".join(f"--table {table}" for table in switches)
        raise ConfigError(
            f"The mirror holds {columns} digested differently from this run's {digest.label}: mixed digests never "
            f"match each other. Set the same key (CDC_SYNC_HASH_KEY) as before, or switch with `cdc-sync resync "
            f"{tables}`, which empties and re-reads those tables (rows kept only as history of deleted source "
            "rows are lost)."
        )
    return set(switches)
