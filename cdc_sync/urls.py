"""Database URLs: parsing, engine detection and redaction, through SQLAlchemy's URL object."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from cdc_sync.errors import ConfigError

SOURCE_ENGINES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}

DESTINATION_ENGINES = {
    "duckdb": "duckdb",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "snowflake": "snowflake",
    "redshift": "redshift",
}


def parse_url(url: str | URL, *, role: str) -> URL:
    """Parse ``url`` or raise a :class:`ConfigError` that shows the expected shape (and no password)."""
    if isinstance(url, URL):
        return url
    if not url or not isinstance(url, str):
        raise ConfigError(f"No {role} URL given: pass --{role} URL or set CDC_SYNC_{role.upper()}_URL.")
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        shown = url.rsplit("@", 1)[-1] if "@" in url else url
        raise ConfigError(
            f"Malformed {role} URL ({shown!r}): expected e.g. postgresql://user:password@host:5432/airflow "
            "or duckdb:///path/to/mirror.duckdb."
        ) from None


def engine_of(url: URL, *, role: str) -> str:
    """The engine family of a URL, e.g. ``postgresql+psycopg2`` → ``postgresql``."""
    backend = url.get_backend_name()
    table = SOURCE_ENGINES if role == "source" else DESTINATION_ENGINES
    try:
        return table[backend]
    except KeyError:
        known = ", ".join(sorted(set(table)))
        raise ConfigError(
            f"Unsupported {role} engine {backend!r} in {redact(url)}: use one of {known}."
        ) from None


def redact(url: URL | str) -> str:
    """Render a URL for messages and logs with its password hidden."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)
