"""Hashed columns: a keyed digest whenever a key is set, and never two kinds of digest mixed in one mirror."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from pathlib import Path

import pytest

import cdc_sync
from cdc_sync.digests import digest_for
from tests.mirror_check import mirror_query

KEY = "k" * 8 + "-key-of-test-1"
OTHER_KEY = "o" * 8 + "-key-of-test-2"


@pytest.fixture
def users(sqlite_airflow3_source: str, tmp_path: Path) -> tuple[str, str]:
    """An Airflow SQLite source with a table of email addresses (Airflow 3 without the FAB auth manager has no
    ab_user of its own), and a DuckDB destination."""
    path = sqlite_airflow3_source.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE IF EXISTS ab_user")
        connection.execute("CREATE TABLE ab_user (id INTEGER PRIMARY KEY, email TEXT)")
        connection.executemany("INSERT INTO ab_user VALUES (?, ?)", [(1, "ada@example.com"), (2, "bob@example.com")])
    return f"sqlite:///{path}", f"duckdb:///{tmp_path / 'mirror.duckdb'}"


def _emails(destination: str) -> list[str]:
    return [email for (email,) in mirror_query(destination, 'SELECT email FROM "airflow"."ab_user" ORDER BY id')]


def test_a_key_makes_the_digest_an_hmac_that_a_guess_cannot_reproduce(users: tuple[str, str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    source, destination = users
    monkeypatch.setenv("CDC_SYNC_HASH_KEY", KEY)
    cdc_sync.sync(source, destination, tables=["ab_user"], hash_columns=["ab_user.email"])
    guessed = hashlib.sha256(b"ada@example.com").hexdigest()
    keyed = hmac.new(KEY.encode(), b"ada@example.com", hashlib.sha256).hexdigest()
    assert _emails(destination)[0] == keyed != guessed
    meta = dict(mirror_query(destination, 'SELECT key, value FROM "airflow"._cdc_meta'))
    assert meta["digest:ab_user.email"] == digest_for(KEY).label and KEY not in str(meta)


def test_without_a_key_the_digest_is_plain_sha256(users: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    source, destination = users
    monkeypatch.delenv("CDC_SYNC_HASH_KEY", raising=False)
    cdc_sync.sync(source, destination, tables=["ab_user"], hash_columns=["ab_user.email"])
    assert _emails(destination)[1] == hashlib.sha256(b"bob@example.com").hexdigest()


def test_a_digest_switch_is_refused_until_a_resync_redigests_every_row(users: tuple[str, str]) -> None:
    source, destination = users
    cdc_sync.sync(source, destination, tables=["ab_user"], hash_columns=["ab_user.email"], hash_key=KEY)
    before = _emails(destination)
    for other in (None, OTHER_KEY):
        with pytest.raises(cdc_sync.ConfigError, match=r"ab_user\.email.*resync --table ab_user") as refused:
            cdc_sync.sync(source, destination, tables=["ab_user"], hash_columns=["ab_user.email"], hash_key=other)
        assert KEY not in str(refused.value) and (other is None or other not in str(refused.value))
        assert _emails(destination) == before
    cdc_sync.resync(source, destination, tables=["ab_user"], hash_columns=["ab_user.email"], hash_key=OTHER_KEY)
    assert _emails(destination) == [hmac.new(OTHER_KEY.encode(), e.encode(), hashlib.sha256).hexdigest()
                                    for e in ("ada@example.com", "bob@example.com")]
    assert cdc_sync.sync(source, destination, tables=["ab_user"], hash_columns=["ab_user.email"],
                         hash_key=OTHER_KEY).ok


def test_a_short_key_is_refused_before_anything_connects() -> None:
    with pytest.raises(cdc_sync.ConfigError, match="at least 16 characters") as refused:
        cdc_sync.sync("sqlite:////nonexistent/airflow.db", "duckdb:///unused.duckdb", hash_key="short-key")
    assert "short-key" not in str(refused.value)
