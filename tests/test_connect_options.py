"""Connection options read from source URLs: PostgreSQL Unix sockets (the Cloud SQL proxy's form) and MySQL TLS,
which verifies the server unless the URL says otherwise."""

from __future__ import annotations

import ssl
from pathlib import Path

import psycopg
import pytest

import cdc_sync
from cdc_sync.errors import ConfigError
from cdc_sync.sources import open_source
from cdc_sync.sources.mysql_connect import connect_args
from cdc_sync.urls import make_url

SOCKET_FOLDER = "/var/run/postgresql"  # where the local server listens (SHOW unix_socket_directories)


def test_a_unix_socket_in_host_is_where_the_source_connects(airflow3_source: str, duckdb_destination: str) -> None:
    """``postgresql://user@/db?host=/cloudsql/project:region:instance`` is what Composer users have; the same
    form with the local server's socket folder must reach that server over the socket, not localhost:5432."""
    if not Path(SOCKET_FOLDER, ".s.PGSQL.5432").exists():
        pytest.skip(f"no PostgreSQL socket in {SOCKET_FOLDER}")
    database = make_url(airflow3_source).database
    url = f"postgresql://postgres@/{database}?host={SOCKET_FOLDER}"
    with open_source(make_url(url)) as source:
        assert source.inner._connection.info.host == SOCKET_FOLDER
        assert source.identity() == f"postgresql://{SOCKET_FOLDER}:5432/{database}"
        assert "task_instance" in source.list_tables()
    assert cdc_sync.sync(url, duckdb_destination, tables=["dag_run"]).ok


def test_a_socket_folder_without_a_server_is_not_replaced_by_localhost(tmp_path: Path) -> None:
    with pytest.raises(cdc_sync.SourceError, match=str(tmp_path)):
        open_source(make_url(f"postgresql://postgres@/postgres?host={tmp_path}"))
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as reachable:
        assert reachable.info.host == "127.0.0.1"  # so the refusal above was the socket's, not the server's


def _tls(query: str) -> ssl.SSLContext | None:
    return connect_args(make_url(f"mysql://root@db.example.com/airflow{query}")).get("ssl")


def test_mysql_tls_verifies_the_certificate_and_host_name_by_default() -> None:
    for query in ("?ssl=true", "?ssl=required", "?ssl=1"):
        context = _tls(query)
        assert context is not None and context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert _tls("") is None and _tls("?ssl=false") is None


def test_mysql_tls_verification_is_turned_off_only_when_asked() -> None:
    no_host_name = _tls("?ssl=true&ssl_check_hostname=false")
    assert no_host_name.verify_mode is ssl.CERT_REQUIRED and not no_host_name.check_hostname  # type: ignore[union-attr]
    nothing = _tls("?ssl=true&ssl_verify_cert=false")
    assert nothing.verify_mode is ssl.CERT_NONE and not nothing.check_hostname  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="ssl_verify_cert='maybe'"):
        _tls("?ssl=true&ssl_verify_cert=maybe")
