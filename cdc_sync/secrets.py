"""Which columns never leave the source: denied by what their name says, in every table, plus known payloads.

A fixed list of ``table.column`` names leaks whatever the next Airflow version or a plugin adds (Airflow 3.3's
``connection_test_request.password`` was such a column). So a column is excluded when a whole word of its
snake_case name marks a credential (``password``, ``secret``, ``token``, ``api_key``, …), whatever table it is in,
including tables the catalog does not know. On top of that rule, the catalog names the payloads that hold secrets
without saying so (``connection.extra``, ``variable.val``, …: :attr:`cdc_sync.catalog.TableKnowledge.
sensitive_columns`). ``include_columns`` is the one way back in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cdc_sync import catalog

# Whole words of a column name that mark a credential. Plurals and common spellings are listed rather than
# matched by stem, so that e.g. ``tokenizer`` or ``authority`` stay copied.
CREDENTIAL_WORDS: frozenset[str] = frozenset({
    "password", "passwords", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "tokens", "credential",
    "credentials", "creds", "auth", "authorization", "apikey", "privatekey", "jwt", "cookie", "cookies", "totp",
})
# Runs of words that mark a credential together, though each alone does not ("key" alone names xcom.key).
CREDENTIAL_PHRASES: tuple[tuple[str, ...], ...] = (
    ("api", "key"),
    ("private", "key"),
    ("access", "key"),
    ("signing", "key"),
    ("encryption", "key"),
    ("session", "key"),
    ("client", "key"),
)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def name_words(column: str) -> tuple[str, ...]:
    """The words of a column name: snake_case, kebab-case, dotted or camelCase, lower-cased."""
    spaced = _CAMEL_BOUNDARY.sub("_", column)
    return tuple(word for word in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if word)


def names_a_credential(column: str) -> bool:
    """Whether a whole word (or run of words) of ``column`` marks a credential."""
    words = name_words(column)
    if any(word in CREDENTIAL_WORDS for word in words):
        return True
    return any(words[start:start + len(phrase)] == phrase
               for phrase in CREDENTIAL_PHRASES for start in range(len(words) - len(phrase) + 1))


@dataclass(frozen=True)
class SecretColumns:
    """The columns of one table kept out of the mirror, and those among them excluded by the name rule alone."""

    excluded: tuple[str, ...]
    by_name_only: tuple[str, ...]


def excluded_by_name_warning(table: str, columns: Iterable[str]) -> str:
    """What the run reports for a table, so that a column the name rule catches never disappears silently."""
    columns = tuple(columns)
    references = " ".join(f"--include-column {table}.{column}" for column in columns)
    return (f"Column(s) {', '.join(columns)} of {table} not copied: their names mark a credential. If they hold "
            f"none, copy them with {references} (include_columns).")


def secret_columns(table: str, columns: Iterable[str], included: Iterable[str] = ()) -> SecretColumns:
    """The columns of ``table`` that are not copied: known payloads and credential-named columns, except those the
    user included."""
    payloads = catalog.knowledge(table).sensitive_columns
    allowed = set(included)
    excluded: list[str] = []
    by_name_only: list[str] = []
    for column in columns:
        if column in allowed:
            continue
        if column in payloads:
            excluded.append(column)
        elif names_a_credential(column):
            excluded.append(column)
            by_name_only.append(column)
    return SecretColumns(tuple(excluded), tuple(by_name_only))
