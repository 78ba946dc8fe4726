"""What each driver's errors mean to a user: retry or not, the problem in words, and the fix.

Tables keyed by what the drivers guarantee (SQLSTATE and its two-letter class, MySQL error numbers, SQLite result
codes, exception classes, OS errno names, AWS error codes), never by message text. :mod:`cdc_sync.translate` looks
errors up here; ``tests/test_translate.py`` fails when a driver has a class or a SQLSTATE class these tables miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace


@dataclass(frozen=True)
class Kind:
    """``transient``: a retry may cure it (the cycle retries a warehouse's; the next cycle resumes either way).
    ``fix`` may name ``{role}`` (source or destination)."""

    transient: bool
    problem: str
    fix: str


kinds = SimpleNamespace(
    connection=Kind(True, "the connection failed or was lost",
                    "Check that the server is running and reachable from here (host, port, network, TLS); the next "
                    "cycle resumes from the last watermark."),
    authentication=Kind(False, "the server refused the credentials",
                        "Check the user, password, key or token of the {role} settings."),
    privilege=Kind(False, "the user lacks a privilege",
                   "Grant it to the {role} user: the source needs SELECT on the Airflow tables, the warehouse user "
                   "needs to create schemas and tables in its database."),
    missing=Kind(False, "a database, table or column is missing",
                 "Check the database in the {role} URL; if a mirror table was changed by hand, run `cdc-sync resync` "
                 "for it."),
    conflict=Kind(True, "a lock or a concurrent transaction got in the way",
                  "Retried; if it persists, look for long transactions holding locks on the {role}."),
    resources=Kind(True, "the server ran out of resources (disk, memory or connections)",
                   "Free some or raise the limit, then run the cycle again."),
    cancelled=Kind(True, "the statement was cancelled or timed out",
                   "Raise the {role} user's statement timeout, or run the cycle when the server is less busy."),
    read_only=Kind(False, "the server accepts reads only",
                   "Point the {role} at the primary, writable server."),
    data=Kind(False, "a value cannot be stored as it is",
              "Correct the value in the source, or run `cdc-sync resync` for the table if its mirror was altered."),
    conversion=Kind(False, "a value cannot be read as its declared type",
                    "Correct the value named in the message in the source database, then run the cycle again."),
    refused=Kind(False, "the server refused a statement",
                 "If the mirror's tables were altered by hand, run `cdc-sync resync`; otherwise report this message "
                 "as a bug of cdc_sync."),
    unsupported=Kind(False, "the server does not support what was asked",
                     "Check that the server's version is one cdc_sync supports (see README)."),
    internal=Kind(False, "the server reported an internal error", "Check the {role} server's log."),
    corrupt=Kind(False, "the database file is damaged or not a database",
                 "Check the path in the {role} URL; restore the file from a backup if it is damaged."),
    files=Kind(False, "a file could not be read or written",
               "Check the path in the {role} settings, its permissions and the free disk space."),
    disk_full=Kind(False, "the disk is full", "Free disk space on this machine, then run the cycle again."),
    out_of_memory=Kind(True, "memory ran out", "Give the process more memory, or sync fewer tables at a time."),
    configuration=Kind(False, "the driver's settings are incomplete or wrong",
                       "Check the {role} URL's options and the driver's configuration files."),
    aws_credentials=Kind(False, "no usable AWS credentials",
                         "Configure AWS credentials (environment, profile or instance role) that may write to the "
                         "s3_bucket option's bucket, or drop s3_bucket to load by INSERT."),
    aws_refused=Kind(False, "AWS refused the request",
                     "Check that the s3_bucket exists, its region, and that the credentials may write to it."),
    aws_busy=Kind(True, "AWS is throttling or unavailable", "Retried; run the cycle again later if it persists."),
)

# SQLSTATE classes (PostgreSQL, Redshift, Snowflake), with the codes that differ from their class below.
SQLSTATE_CLASSES: dict[str, Kind] = {
    "00": kinds.refused,  # successful completion: never an error in practice
    "01": kinds.refused,  # warning
    "02": kinds.refused,  # no data
    "03": kinds.refused,  # SQL statement not yet complete
    "08": kinds.connection,
    "09": kinds.refused,  # triggered action exception
    "0A": kinds.unsupported,
    "0B": kinds.refused,  # invalid transaction initiation
    "0F": kinds.refused,  # locator exception
    "0L": kinds.privilege,  # invalid grantor
    "0P": kinds.privilege,  # invalid role specification
    "0Z": kinds.refused,  # diagnostics exception
    "10": kinds.refused,  # XQuery error
    "20": kinds.refused,  # case not found
    "21": kinds.data,  # cardinality violation
    "22": kinds.data,
    "23": kinds.data,  # integrity constraint violation
    "24": kinds.refused,  # invalid cursor state
    "25": kinds.refused,  # invalid transaction state (25006, read only, below)
    "26": kinds.refused,  # invalid SQL statement name
    "27": kinds.refused,  # triggered data change violation
    "28": kinds.authentication,
    "2B": kinds.refused,  # dependent privilege descriptors still exist
    "2D": kinds.refused,  # invalid transaction termination
    "2F": kinds.refused,  # SQL routine exception
    "34": kinds.refused,  # invalid cursor name
    "38": kinds.refused,  # external routine exception
    "39": kinds.refused,  # external routine invocation exception
    "3B": kinds.refused,  # savepoint exception
    "3D": kinds.missing,  # invalid catalog name: the database does not exist
    "3F": kinds.missing,  # invalid schema name
    "40": kinds.conflict,  # transaction rollback: serialization failure, deadlock
    "42": kinds.refused,  # syntax error or access rule violation (42501 and missing objects below)
    "44": kinds.refused,  # WITH CHECK OPTION violation
    "53": kinds.resources,
    "54": kinds.resources,  # program limit exceeded
    "55": kinds.refused,  # object not in prerequisite state (55P03 below)
    "57": kinds.cancelled,  # operator intervention (57P01 etc. below)
    "58": kinds.internal,  # system error (I/O on the server)
    "72": kinds.refused,  # snapshot failure
    "F0": kinds.configuration,  # configuration file error
    "HV": kinds.refused,  # foreign data wrapper error
    "P0": kinds.refused,  # PL/pgSQL error
    "XX": kinds.internal,
}
SQLSTATES: dict[str, Kind] = {
    "25006": kinds.read_only,
    "42501": kinds.privilege,
    "42P01": kinds.missing,  # undefined table
    "42703": kinds.missing,  # undefined column
    "55P03": kinds.conflict,  # lock not available
    "57P01": kinds.connection,  # admin shutdown
    "57P02": kinds.connection,  # crash shutdown
    "57P03": kinds.connection,  # cannot connect now (starting up)
    "53100": kinds.resources,  # disk full (on the server)
}

# The DB-API classes every driver defines (PEP 249), for errors that come without a code.
DBAPI_CLASSES: dict[str, Kind] = {
    "InterfaceError": kinds.connection,
    "OperationalError": kinds.connection,
    "DataError": kinds.data,
    "IntegrityError": kinds.data,
    "InternalError": kinds.internal,
    "ProgrammingError": kinds.refused,
    "NotSupportedError": kinds.unsupported,
    "DatabaseError": kinds.refused,
    "Warning": kinds.refused,
    "Error": kinds.refused,
    "MySQLError": kinds.refused,
    # redshift_connector's array checks
    "ArrayContentNotHomogenousError": kinds.data,
    "ArrayContentNotSupportedError": kinds.data,
    "ArrayDimensionsNotConsistentError": kinds.data,
}

MYSQL_ERRNOS: dict[int, Kind] = {
    1044: kinds.privilege,  # access denied to the database
    1045: kinds.authentication,  # access denied for user (password)
    1049: kinds.missing,  # unknown database
    1054: kinds.missing,  # unknown column
    1142: kinds.privilege,  # table access denied
    1143: kinds.privilege,  # column access denied
    1146: kinds.missing,  # table does not exist
    1205: kinds.conflict,  # lock wait timeout
    1213: kinds.conflict,  # deadlock
    1227: kinds.privilege,  # specific access denied (e.g. PROCESS)
    1040: kinds.resources,  # too many connections
    1041: kinds.resources,  # out of memory
    1290: kinds.read_only,  # --read-only
    1969: kinds.cancelled,  # max_statement_time exceeded (MariaDB)
    3024: kinds.cancelled,  # max_execution_time exceeded (MySQL)
    2002: kinds.connection,  # cannot connect through socket
    2003: kinds.connection,  # cannot connect to server
    2006: kinds.connection,  # server has gone away
    2013: kinds.connection,  # lost connection during query
    2026: kinds.connection,  # TLS connection error
}

# SQLite primary result codes (the part of sqlite_errorname before any extended suffix).
SQLITE_CODES: dict[str, Kind] = {
    "SQLITE_ERROR": kinds.refused,
    "SQLITE_INTERNAL": kinds.internal,
    "SQLITE_PERM": kinds.files,
    "SQLITE_ABORT": kinds.conflict,
    "SQLITE_BUSY": kinds.conflict,
    "SQLITE_LOCKED": kinds.conflict,
    "SQLITE_NOMEM": kinds.out_of_memory,
    "SQLITE_READONLY": kinds.read_only,
    "SQLITE_INTERRUPT": kinds.cancelled,
    "SQLITE_IOERR": kinds.files,
    "SQLITE_CORRUPT": kinds.corrupt,
    "SQLITE_NOTFOUND": kinds.refused,
    "SQLITE_FULL": kinds.disk_full,
    "SQLITE_CANTOPEN": kinds.files,
    "SQLITE_PROTOCOL": kinds.conflict,
    "SQLITE_EMPTY": kinds.refused,
    "SQLITE_SCHEMA": kinds.conflict,  # the schema changed under the statement
    "SQLITE_TOOBIG": kinds.data,
    "SQLITE_CONSTRAINT": kinds.data,
    "SQLITE_MISMATCH": kinds.data,
    "SQLITE_MISUSE": kinds.refused,
    "SQLITE_NOLFS": kinds.unsupported,
    "SQLITE_AUTH": kinds.privilege,
    "SQLITE_FORMAT": kinds.corrupt,
    "SQLITE_RANGE": kinds.refused,
    "SQLITE_NOTADB": kinds.corrupt,
    "SQLITE_NOTICE": kinds.refused,
    "SQLITE_WARNING": kinds.refused,
}

DUCKDB_CLASSES: dict[str, Kind] = {
    "IOException": kinds.files,
    "PermissionException": kinds.files,
    "OutOfMemoryException": kinds.out_of_memory,
    "TransactionException": kinds.conflict,  # a write-write conflict between connections
    "InterruptException": kinds.cancelled,
    "ConversionException": kinds.data,
    "OutOfRangeException": kinds.data,
    "InvalidInputException": kinds.data,
    "TypeMismatchException": kinds.data,
    "InvalidTypeException": kinds.data,
    "ConstraintException": kinds.data,
    "SerializationException": kinds.corrupt,
    "CatalogException": kinds.missing,
    "DependencyException": kinds.refused,
    "BinderException": kinds.refused,
    "ParserException": kinds.refused,
    "SyntaxException": kinds.refused,
    "SequenceException": kinds.refused,
    "NotImplementedException": kinds.unsupported,
    "ConnectionException": kinds.files,
    "HTTPException": kinds.connection,
    "ResourceInUseException": kinds.conflict,
    "FatalException": kinds.internal,
    "InternalException": kinds.internal,
    **{name: DBAPI_CLASSES[name] for name in ("DataError", "DatabaseError", "IntegrityError", "InternalError",
                                              "NotSupportedError", "OperationalError", "ProgrammingError", "Error")},
}

# Snowflake: the connector's own error numbers first (timeouts, aborted by a conflicting transaction, session or
# token expiry, its network failures 25xxxx), then SQLSTATE, then its classes.
SNOWFLAKE_ERRNOS: dict[int, Kind] = {
    604: kinds.cancelled,  # statement cancelled
    625: kinds.conflict,  # aborted by a conflicting transaction
    630: kinds.cancelled,  # statement timeout
    390114: kinds.connection,  # authentication token expired
    250001: kinds.connection,  # could not connect
    250003: kinds.connection,  # failed to get the response
    251005: kinds.connection,
    251006: kinds.connection,
}
SNOWFLAKE_CLASSES: dict[str, Kind] = {
    "ForbiddenError": kinds.authentication,
    "BadGatewayError": kinds.connection,
    "GatewayTimeoutError": kinds.connection,
    "ServiceUnavailableError": kinds.connection,
    "InternalServerError": kinds.connection,
    "OtherHTTPRetryableError": kinds.connection,
    "RequestTimeoutError": kinds.connection,
    "RequestExceedMaxRetryError": kinds.connection,
    "TooManyRequests": kinds.connection,
    "TokenExpiredError": kinds.connection,
    "RefreshTokenError": kinds.authentication,
    "PresignedUrlExpiredError": kinds.connection,
    "HttpError": kinds.refused,
    "BadRequest": kinds.refused,
    "MethodNotAllowed": kinds.refused,
    "BindUploadError": kinds.files,
    "NonRetryableTlsError": kinds.connection,
    "RevocationCheckError": kinds.connection,
    "MissingDependencyError": kinds.configuration,
    "ConfigManagerError": kinds.configuration,
    "ConfigSourceError": kinds.configuration,
    "MissingConfigOptionError": kinds.configuration,
    "_Warning": kinds.refused,
}

BOTOCORE_CLASSES: dict[str, Kind] = {
    "NoCredentialsError": kinds.aws_credentials,
    "PartialCredentialsError": kinds.aws_credentials,
    "CredentialRetrievalError": kinds.aws_credentials,
    "NoRegionError": kinds.configuration,
    "ProfileNotFound": kinds.configuration,
    "ParamValidationError": kinds.aws_refused,
    "EndpointConnectionError": kinds.connection,
    "ConnectTimeoutError": kinds.connection,
    "ReadTimeoutError": kinds.connection,
    "ConnectionClosedError": kinds.connection,
    "HTTPClientError": kinds.connection,
    "SSLError": kinds.connection,
}
BOTO_CODES: dict[str, Kind] = {
    "AccessDenied": kinds.aws_refused,
    "NoSuchBucket": kinds.aws_refused,
    "InvalidAccessKeyId": kinds.aws_credentials,
    "SignatureDoesNotMatch": kinds.aws_credentials,
    "ExpiredToken": kinds.aws_credentials,
    "SlowDown": kinds.aws_busy,
    "Throttling": kinds.aws_busy,
    "RequestTimeout": kinds.aws_busy,
    "InternalError": kinds.aws_busy,
    "ServiceUnavailable": kinds.aws_busy,
}

OS_ERRNOS: dict[str, Kind] = {
    "ENOSPC": kinds.disk_full,
    "EDQUOT": kinds.disk_full,
    "ENOMEM": kinds.out_of_memory,
    "ECONNREFUSED": kinds.connection,
    "ECONNRESET": kinds.connection,
    "ECONNABORTED": kinds.connection,
    "ETIMEDOUT": kinds.connection,
    "EHOSTUNREACH": kinds.connection,
    "ENETUNREACH": kinds.connection,
    "EPIPE": kinds.connection,
    "TimeoutError": kinds.connection,  # socket timeouts carry no errno
}
