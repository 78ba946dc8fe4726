"""Database URLs: parsing, engine detection and redaction.

URLs have SQLAlchemy's shape (``dialect+driver://user:password@host:port/database?key=value``; ``sqlite:///rel.db``
and ``duckdb:////abs/path.duckdb`` for files) and are split, percent-decoded and re-encoded by the standard
library's :mod:`urllib.parse`. :class:`URL` only names the parts. SQLAlchemy's own URL object would cost its whole
import, about 0.3 s, at the start of every cycle, a third of the no-change cycle's budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

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

HIDDEN_PASSWORD = "***"


@dataclass(frozen=True)
class URL:
    """An immutable database URL; ``query`` maps each option to its (last) value."""

    drivername: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def create(cls, drivername: str, username: str | None = None, password: str | None = None,
               host: str | None = None, port: int | None = None, database: str | None = None,
               query: Mapping[str, Any] | None = None) -> URL:
        return cls(drivername, username, password, host, port, database, _frozen(query))

    def get_backend_name(self) -> str:
        """``postgresql+psycopg`` → ``postgresql``."""
        return self.drivername.split("+", 1)[0]

    def set(self, **changes: Any) -> URL:
        if "query" in changes:
            changes["query"] = _frozen(changes["query"])
        return replace(self, **changes)

    def render_as_string(self, hide_password: bool = True) -> str:
        netloc = ""
        if self.username is not None:
            netloc = quote(self.username, safe="")
            if self.password is not None:
                netloc += ":" + (HIDDEN_PASSWORD if hide_password else quote(self.password, safe=""))
            netloc += "@"
        if self.host is not None:
            netloc += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            netloc += f":{self.port}"
        text = f"{self.drivername}://{netloc}"
        if self.database is not None:
            text += "/" + quote(self.database, safe="/:~")
        if self.query:
            text += "?" + urlencode(sorted(self.query.items()))
        return text

    def __str__(self) -> str:
        return self.render_as_string(hide_password=True)


def _frozen(query: Mapping[str, Any] | None) -> Mapping[str, str]:
    return MappingProxyType({str(key): str(value) for key, value in (query or {}).items()})


def make_url(text: str) -> URL:
    """Split a URL string into a :class:`URL`; raises ``ValueError`` when it is not of that shape."""
    scheme, separator, _ = text.partition("://")
    if not separator or not scheme or not all(c.isalnum() or c in "+-." for c in scheme):
        raise ValueError(f"not a database URL: {text!r}")
    parts = urlsplit(text, allow_fragments=False)
    port = parts.port  # raises ValueError for a port that is not a number in range
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return URL.create(
        scheme,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        host=unquote(parts.hostname) if parts.hostname else None,
        port=port,
        database=unquote(path) if path else None,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
    )


# libpq parameters taken from a PostgreSQL URL's query, as SQLAlchemy's psycopg dialects pass them on.
LIBPQ_QUERY_OPTIONS = ("host", "port", "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout",
                       "application_name", "options", "target_session_attrs")


def integer_option(url: URL, key: str, *, role: str) -> int | None:
    """A whole-number URL option, or a :class:`ConfigError` naming it (before any driver sees it)."""
    value = url.query.get(key)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise ConfigError(f"?{key}={value!r} in the {role} URL is not a whole number: write e.g. ?{key}=10.")
    return int(value)


def postgres_conninfo(url: URL, *, role: str = "source") -> dict[str, Any]:
    """psycopg's connection arguments from a PostgreSQL URL, shared by the source and the warehouse.

    ``?host=`` and ``?port=`` override the address part, as in SQLAlchemy and libpq: a Unix socket folder such as
    the Cloud SQL proxy's ``postgresql://user:pw@/airflow?host=/cloudsql/project:region:instance``."""
    integer_option(url, "connect_timeout", role=role)
    port = integer_option(url, "port", role=role)
    params: dict[str, Any] = {
        "host": url.host or "localhost",
        "port": url.port or 5432,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    params.update({key: value for key, value in url.query.items() if key in LIBPQ_QUERY_OPTIONS})
    if port is not None:
        params["port"] = port
    return {key: value for key, value in params.items() if value is not None}


def parse_url(url: str | URL, *, role: str) -> URL:
    """Parse ``url`` or raise a :class:`ConfigError` that shows the expected shape (and no password)."""
    if isinstance(url, URL):
        return url
    if hasattr(url, "render_as_string"):  # a SQLAlchemy URL object, e.g. from Airflow's own settings
        url = url.render_as_string(hide_password=False)
    if not url or not isinstance(url, str):
        raise ConfigError(f"No {role} URL given: pass --{role} URL or set CDC_SYNC_{role.upper()}_URL.")
    try:
        return make_url(url)
    except ValueError:
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
        except ValueError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)
