"""The translation boundary: driver, OS and library errors become cdc_sync's own, at the edge of each source and
destination, the way httpx turns httpcore's errors into its own at the transport.

:class:`Boundary` is the one place it happens; :func:`cdc_sync.sources.open_source` and
:func:`cdc_sync.destinations.open_destination` put every call of the objects they return inside one (see
``sources/boundary.py`` and ``destinations/boundary.py``). Errors are classified by exception class, SQLSTATE,
driver error number or OS errno, never by message text (:mod:`cdc_sync.failure_kinds` holds the tables).

Where the line is: what a driver, the OS, AWS's client or Arrow raise is an expected failure and becomes one line
(``SourceError`` or a transient/terminal ``DestinationError``) naming the operation, the problem and the fix.
Python's own errors raised by cdc_sync's code (``TypeError``, ``KeyError``, ``AttributeError``, ``AssertionError``,
…) are bugs: they cross the boundary untouched, so their traceback reaches the user.
"""

from __future__ import annotations

import errno as errnos
import sys
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from cdc_sync.errors import (
    CdcSyncError,
    SourceError,
    TerminalDestinationError,
    TransientDestinationError,
)
from cdc_sync.failure_kinds import (
    BOTO_CODES,
    BOTOCORE_CLASSES,
    DBAPI_CLASSES,
    DUCKDB_CLASSES,
    MYSQL_ERRNOS,
    OS_ERRNOS,
    SNOWFLAKE_CLASSES,
    SNOWFLAKE_ERRNOS,
    SQLITE_CODES,
    SQLSTATE_CLASSES,
    SQLSTATES,
    Kind,
    kinds,
)
from cdc_sync.urls import MIN_SCRUBBED_LENGTH, URL, scrub

Role = Literal["source", "destination"]


@dataclass(frozen=True)
class Classified:
    """What an error is: its kind (transient or not, the problem, the fix) and the code it was known by."""

    kind: Kind
    code: str


def _loaded(module: str) -> Any:
    """A driver module if something imported it (an error of a driver that was never imported cannot occur)."""
    return sys.modules.get(module)


def _by_class(error: BaseException, table: dict[str, Kind], root: type) -> Kind | None:
    for cls in type(error).__mro__:
        if cls.__name__ in table and issubclass(cls, root):
            return table[cls.__name__]
    return None


def _sqlstate(error: BaseException) -> str | None:
    """psycopg and snowflake carry ``sqlstate``; redshift_connector the server's fields in ``args[0]``."""
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str) and state:
        return state
    fields = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    state = fields.get("C")
    return state if isinstance(state, str) and state else None


def _by_sqlstate(state: str) -> Kind:
    return SQLSTATES.get(state) or SQLSTATE_CLASSES.get(state[:2]) or kinds.refused


def classify(error: BaseException) -> Classified | None:
    """The kind of a driver, OS or library error; None for anything else (a bug, which keeps its traceback)."""
    if (psycopg := _loaded("psycopg")) and isinstance(error, psycopg.Error):
        state = _sqlstate(error)
        if state:
            return Classified(_by_sqlstate(state), f"SQLSTATE {state}")
        return Classified(_by_class(error, DBAPI_CLASSES, psycopg.Error) or kinds.refused, type(error).__name__)
    if (adbc := _loaded("adbc_driver_manager")) and isinstance(error, adbc.Error):
        # ADBC (PostgreSQL's Arrow reads): the server's SQLSTATE when it sent one, else the DB-API class.
        state = _sqlstate(error)
        if state:
            return Classified(_by_sqlstate(state), f"SQLSTATE {state}")
        return Classified(_by_class(error, DBAPI_CLASSES, adbc.Error) or kinds.refused, type(error).__name__)
    if (redshift := _loaded("redshift_connector")) and isinstance(error, redshift.Error):
        state = _sqlstate(error)
        if state:
            return Classified(_by_sqlstate(state), f"SQLSTATE {state}")
        return Classified(_by_class(error, DBAPI_CLASSES, redshift.Error) or kinds.refused, type(error).__name__)
    if (snowflake := _loaded("snowflake.connector.errors")) and isinstance(error, snowflake.Error):
        number, state = getattr(error, "errno", None), _sqlstate(error)
        if number in SNOWFLAKE_ERRNOS:
            return Classified(SNOWFLAKE_ERRNOS[number], f"error {number}")
        if state:
            return Classified(_by_sqlstate(state), f"error {number}, SQLSTATE {state}")
        kind = _by_class(error, SNOWFLAKE_CLASSES, snowflake.Error) or _by_class(error, DBAPI_CLASSES, snowflake.Error)
        return Classified(kind or kinds.refused, f"error {number}" if number else type(error).__name__)
    if (pymysql := _loaded("pymysql")) and isinstance(error, pymysql.err.MySQLError):
        number = error.args[0] if error.args and isinstance(error.args[0], int) else None
        if number in MYSQL_ERRNOS:
            return Classified(MYSQL_ERRNOS[number], f"MySQL error {number}")
        kind = _by_class(error, DBAPI_CLASSES, pymysql.err.MySQLError) or kinds.refused
        return Classified(kind, f"MySQL error {number}" if number else type(error).__name__)
    if (sqlite3 := _loaded("sqlite3")) and isinstance(error, sqlite3.Error):
        name = getattr(error, "sqlite_errorname", None) or ""
        primary = name.split("_")[0:2]
        kind = SQLITE_CODES.get("_".join(primary)) or _by_class(error, DBAPI_CLASSES, sqlite3.Error)
        return Classified(kind or kinds.refused, name or type(error).__name__)
    if (duckdb := _loaded("duckdb")) and isinstance(error, duckdb.Error):
        return Classified(_by_class(error, DUCKDB_CLASSES, duckdb.Error) or kinds.refused, type(error).__name__)
    if (botocore := _loaded("botocore.exceptions")) and isinstance(error, botocore.ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        return Classified(BOTO_CODES.get(code, kinds.aws_refused), f"AWS {code or 'error'}")
    if (botocore := _loaded("botocore.exceptions")) and isinstance(error, botocore.BotoCoreError):
        return Classified(_by_class(error, BOTOCORE_CLASSES, botocore.BotoCoreError) or kinds.aws_refused,
                          type(error).__name__)
    if (boto3 := _loaded("boto3.exceptions")) and isinstance(error, boto3.Boto3Error):
        return Classified(kinds.aws_refused, type(error).__name__)
    if (pyarrow := _loaded("pyarrow")) and isinstance(error, pyarrow.ArrowException):
        kind = kinds.files if isinstance(error, OSError) else kinds.conversion
        return Classified(kind, type(error).__name__)
    if isinstance(error, OSError):
        code = errnos.errorcode.get(error.errno or 0, type(error).__name__)
        return Classified(OS_ERRNOS.get(code, kinds.files), code)
    return None


def edge_secrets(url: URL, options: Mapping[str, Any] | None = None) -> list[str]:
    """Every secret an edge was given, to keep out of its messages: what :func:`cdc_sync.urls.redact` hides of its
    URL (as given and percent-encoded), and every driver option's value (a private key, a passphrase)."""
    values = list(url.secret_values())
    values += [str(value) for value in (options or {}).values()
               if value is not None and len(str(value)) >= MIN_SCRUBBED_LENGTH]
    return values


def one_line(text: object) -> str:
    return " ".join(str(text).split())


class Boundary:
    """The translation of one edge: a source or a destination, of one engine, at one (redacted) address."""

    def __init__(self, role: Role, engine: str, location: str, secrets: Iterable[str] = ()) -> None:
        self.role = role
        self.engine = engine
        self.location = location
        self.secrets = tuple(sorted({str(s) for s in secrets if s}, key=len, reverse=True))

    @contextmanager
    def translating(self, operation: str) -> Iterator[None]:
        """Run the block; a driver, OS or library error leaves it as the project's error, one line long."""
        try:
            yield
        except CdcSyncError:
            raise
        except Exception as error:
            classified = classify(error)
            if classified is None:
                raise  # a bug in cdc_sync: its traceback must reach the user
            raise self.translate(error, classified, operation) from error

    def translate(self, error: BaseException, classified: Classified, operation: str) -> CdcSyncError:
        kind = classified.kind
        reason = one_line(error) or type(error).__name__
        message = scrub(
            f"{operation[:1].upper()}{operation[1:]} on the {self.engine} {self.role} {self.location} failed "
            f"({classified.code}, {kind.problem}): {reason}. {kind.fix.format(role=self.role)}",
            secrets=self.secrets,
        )
        if self.role == "source":
            return SourceError(message)
        return (TransientDestinationError if kind.transient else TerminalDestinationError)(message)

    def iterate(self, operation: str, items: Iterable[Any]) -> Generator[Any, None, None]:
        """``items`` pulled one by one inside the boundary (a stream's errors surface while it is consumed), and
        closed inside it too, so that a stream given up early ends its read (a COPY) before the next statement."""
        with self.translating(operation):
            iterator = iter(items)
        try:
            while True:
                with self.translating(operation):
                    item = next(iterator, _END)
                if item is _END:
                    return
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                with self.translating(operation):
                    close()


_END = object()

