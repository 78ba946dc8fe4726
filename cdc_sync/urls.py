"""Database URLs: parsing, engine detection and redaction.

Everything that shows a URL shows :func:`redact`: the password and every query value are hidden, except the
values of a few keys that carry no credential (``SAFE_QUERY_KEYS``). Drivers receive any other query option
(``?token=…``, ``?private_key_file_pwd=…``, ``?secret_access_key=…``), and their errors may echo it back, so
:func:`scrub` hides those values in any text built from a driver's error.

URLs have SQLAlchemy's shape (``dialect+driver://user:password@host:port/database?key=value``; ``sqlite:///rel.db``
and ``duckdb:////abs/path.duckdb`` for files) and are split, percent-decoded and re-encoded by the standard
library's :mod:`urllib.parse`. :class:`URL` only names the parts. SQLAlchemy's own URL object would cost its whole
import, about 0.3 s, at the start of every cycle, a third of the no-change cycle's budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit

from cdc_sync.errors import CdcSyncError, ConfigError

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
# The source URL option naming the schema that holds Airflow's tables (PostgreSQL: the schema read instead of
# search_path's; MySQL/MariaDB: the database read instead of the URL's). A cdc_sync option: never sent to a driver.
SOURCE_SCHEMA_OPTION = "schema"
# Query keys whose values are shown: settings that carry no credential. Every other value is rendered as ***.
SAFE_QUERY_KEYS: frozenset[str] = frozenset({
    "warehouse", "role", "schema", "host", "port", "sslmode", "ssl", "connect_timeout", "login_timeout",
    "application_name", "application", "charset", "region", "cluster_identifier", "is_serverless", "iam", "timezone",
})
# Values shorter than this are not searched for in error text: replacing every "1" would garble it, and a value
# that short protects nothing.
MIN_SCRUBBED_LENGTH = 4


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
            query = self.query if not hide_password else {
                key: value if key.lower() in SAFE_QUERY_KEYS else HIDDEN_PASSWORD for key, value in self.query.items()
            }
            text += "?" + urlencode(sorted(query.items()), safe="*")
        return text

    def __str__(self) -> str:
        return self.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"URL({self.render_as_string(hide_password=True)!r})"

    def secret_values(self) -> tuple[str, ...]:
        """The values :func:`redact` hides (password, unsafe query values), as given and percent-encoded."""
        values = [self.password or ""] + [value for key, value in self.query.items()
                                          if key.lower() not in SAFE_QUERY_KEYS]
        # A value may hold settings of its own (``options=-c statement_timeout=…``) that a server echoes one by one.
        values += [part.partition("=")[2] for value in values[1:] for part in re.split(r"[\s,;&]+", value)]
        forms = {form for value in values if len(value) >= MIN_SCRUBBED_LENGTH
                 for form in (value, quote(value, safe=""), quote_plus(value))}
        return tuple(sorted(forms, key=len, reverse=True))


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
        shown = (url.rsplit("@", 1)[-1] if "@" in url else url).split("?", 1)[0]  # no password, no query value
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


def scrub(text: str, *urls: URL | None, secrets: Iterable[Any] = ()) -> str:
    """``text`` (e.g. a driver's error message) with every secret of ``urls`` and every value of ``secrets``
    replaced by ``***``: drivers echo connection parameters back in their errors."""
    values = {value for url in urls if url is not None for value in url.secret_values()}
    values.update(str(value) for value in secrets if value is not None and len(str(value)) >= MIN_SCRUBBED_LENGTH)
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, HIDDEN_PASSWORD)
    return text


@contextmanager
def scrubbed_errors(*urls: URL | None, secrets: Iterable[Any] = ()) -> Iterator[None]:
    """A boundary: a :class:`CdcSyncError` leaving it has its message scrubbed, and loses any chained driver error
    whose text holds a secret (a traceback would print it: Airflow logs a failed task's)."""
    try:
        yield
    except CdcSyncError as error:
        secrets = tuple(secrets)
        error.args = (scrub(str(error), *urls, secrets=secrets), *error.args[1:])
        cause = error.__cause__ or error.__context__
        while cause is not None:
            if scrub(str(cause), *urls, secrets=secrets) != str(cause):
                error.__cause__, error.__suppress_context__ = None, True
                break
            cause = cause.__cause__ or cause.__context__
        raise


def redact(url: URL | str) -> str:
    """Render a URL for messages and logs: the password and every query value but harmless settings hidden."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ValueError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


def source_schema(url: URL) -> str | None:
    """The schema a source URL names with ``?schema=`` (see :data:`SOURCE_SCHEMA_OPTION`), None if it names none."""
    return url.query.get(SOURCE_SCHEMA_OPTION)


def with_source_schema(url: URL, schema: str | None) -> URL:
    """``url`` reading Airflow's tables from ``schema`` (unchanged when ``schema`` is None)."""
    if schema is None:
        return url
    return url.set(query={**url.query, SOURCE_SCHEMA_OPTION: schema})
