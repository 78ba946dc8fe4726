"""Database URLs: the shapes users paste, percent-encoding, redaction and the errors for what is not a URL."""

from __future__ import annotations

import pytest

from cdc_sync.errors import ConfigError
from cdc_sync.urls import URL, engine_of, make_url, parse_url, redact


def test_server_url_parts_are_split_and_percent_decoded() -> None:
    url = make_url("postgresql+psycopg://air%40flow:p%40ss%3Aw%2Ford@db.example.com:6543/airflow"
                   "?sslmode=require&application_name=cdc")
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == \
        ("postgresql+psycopg", "air@flow", "p@ss:w/ord", "db.example.com", 6543, "airflow")
    assert dict(url.query) == {"sslmode": "require", "application_name": "cdc"}
    assert url.get_backend_name() == "postgresql"


def test_rendering_round_trips_and_hides_the_password() -> None:
    text = "mysql://root:s%40cret%2F@[::1]:3306/test?charset=utf8mb4"
    url = make_url(text)
    assert url.host == "::1"
    assert make_url(url.render_as_string(hide_password=False)) == url
    shown = redact(url)
    assert "s@cret" not in shown and "s%40cret" not in shown and "***" in shown
    assert "s@cret" not in repr(url) and "s@cret" not in str(url)


@pytest.mark.parametrize(("text", "database"), [
    ("sqlite:///airflow.db", "airflow.db"),
    ("sqlite:////opt/airflow/airflow.db", "/opt/airflow/airflow.db"),
    ("duckdb:////tmp/my%20mirror.duckdb", "/tmp/my mirror.duckdb"),
    ("sqlite://", None),
])
def test_file_urls_keep_relative_and_absolute_paths(text: str, database: str | None) -> None:
    url = make_url(text)
    assert (url.host, url.database) == (None, database)
    assert make_url(url.render_as_string()) == url


def test_created_urls_are_immutable_and_set_returns_a_copy() -> None:
    url = URL.create("snowflake", username="LOADER", host="ab12345", database="RAW", query={"warehouse": "WH"})
    moved = url.set(database="STAGE", query={"role": "R"})
    assert (url.database, dict(url.query)) == ("RAW", {"warehouse": "WH"})
    assert (moved.database, dict(moved.query)) == ("STAGE", {"role": "R"})
    with pytest.raises(TypeError):
        url.query["role"] = "X"  # type: ignore[index]


@pytest.mark.parametrize("text", ["", "localhost:5432/airflow", "postgresql:/db", "post gres://h/db",
                                  "postgresql://h:notaport/db"])
def test_malformed_urls_are_refused_with_the_expected_shape(text: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_url(text, role="source")
    assert "postgresql://user:password@host:5432/airflow" in str(error.value) or "No source URL" in str(error.value)


def test_a_malformed_url_error_never_shows_the_password() -> None:
    with pytest.raises(ConfigError) as error:
        parse_url("postgresql://u:hunter2@h:99999/db?token=PLANTED-SECRET-1", role="source")
    assert "hunter2" not in str(error.value) and "PLANTED-SECRET-1" not in str(error.value)


def test_unknown_engines_are_named_with_the_supported_ones() -> None:
    with pytest.raises(ConfigError, match=r"Unsupported destination engine 'bigquery'.*duckdb"):
        engine_of(make_url("bigquery://project/dataset"), role="destination")


def test_a_sqlalchemy_url_object_is_accepted_as_it_is() -> None:
    from sqlalchemy.engine import make_url as sqlalchemy_url

    url = parse_url(sqlalchemy_url("postgresql+psycopg2://airflow:p%40ss@db:5432/airflow?sslmode=require"),
                    role="source")
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database, dict(url.query)) == \
        ("postgresql+psycopg2", "airflow", "p@ss", "db", 5432, "airflow", {"sslmode": "require"})
