"""Bad input and broken environments through the real command line: one line on stderr and no traceback, the
README's exit code (2 bad input, 1 a failure), nothing written where nothing should be, and no planted secret."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

from cdc_sync.cli import main
from cdc_sync.config import parse_size
from tests.mirror_check import mirror_query

SECRET = "pw-Zq81x"
PG = f"postgresql://postgres:{SECRET}@127.0.0.1:5432"
MY = f"mysql://root:{SECRET}@127.0.0.1:3306"


@dataclass
class Places:
    """What a case may point at: a scratch folder, an empty PostgreSQL database, a SQLite Airflow database."""

    tmp: Path
    request: pytest.FixtureRequest
    _empty_pg: str | None = field(default=None)

    @property
    def mirror(self) -> str:
        return f"duckdb:///{self.tmp}/out/mirror.duckdb"

    @property
    def empty_pg(self) -> str:
        """An existing database without tables, its URL carrying the planted password."""
        if self._empty_pg is None:
            url = self.request.getfixturevalue("postgres_destination")
            self._empty_pg = url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")
        return self._empty_pg

    @property
    def airflow_pg(self) -> str:
        """A PostgreSQL Airflow 3 database, its URL carrying the planted password."""
        url = self.request.getfixturevalue("airflow3_source")
        return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")

    @property
    def sqlite(self) -> str:
        return self.request.getfixturevalue("sqlite_airflow3_source")

    def file(self, name: str, content: str = "not a database\n") -> Path:
        path = self.tmp / name
        path.write_text(content)
        return path


@dataclass(frozen=True)
class Case:
    args: Callable[[Places], list[str]]
    exit_code: int
    says: str  # a phrase of the one line on stderr


CASES: dict[str, Case] = {
    # ---- bad input: exit 2, refused before anything connects or writes ----
    "empty schema": Case(lambda p: ["run", "--source", f"{PG}/airflow", "--destination", p.mirror, "--schema", ""],
                         2, "schema '' is empty"),
    "empty schema for status": Case(lambda p: ["status", "--destination", p.mirror, "--schema", ""],
                                    2, "schema '' is empty"),
    "port not a number": Case(lambda p: ["run", "--source", f"postgresql://u:{SECRET}@h:notaport/db"],
                              2, "Malformed source URL"),
    "not a URL": Case(lambda p: ["run", "--source", "the airflow db"], 2, "Malformed source URL"),
    "unsupported source": Case(lambda p: ["run", "--source", f"oracle://u:{SECRET}@h/db"],
                               2, "Unsupported source engine 'oracle'"),
    "unsupported destination": Case(lambda p: ["run", "--source", f"{PG}/x", "--destination",
                                               f"bigquery://u:{SECRET}@p/d"], 2, "Unsupported destination engine"),
    "no source": Case(lambda p: ["run", "--destination", p.mirror], 2, "No source URL given"),
    "all tables and tables": Case(lambda p: ["run", "--source", f"{PG}/x", "--all-tables", "--tables", "dag"],
                                  2, "exclude each other"),
    "column reference without a dot": Case(lambda p: ["run", "--source", f"{PG}/x", "--hash-column", "email"],
                                           2, "must be written table.column"),
    "max retained WAL not a size": Case(lambda p: ["run", "--source", f"{PG}/x", "--max-retained-wal", "lots"],
                                        2, "'lots' is not a size: write a number and a unit"),
    "max retained WAL of nothing": Case(lambda p: ["run", "--source", f"{PG}/x", "--max-retained-wal", "0GB"],
                                        2, "'0GB' is no size at all"),
    "negative lookback": Case(lambda p: ["run", "--source", f"{PG}/x", "--lookback", "-1"],
                              2, "lookback_seconds must be zero or positive"),
    "schema longer than DuckDB allows": Case(lambda p: ["run", "--source", f"{PG}/x", "--destination", p.mirror,
                                                        "--schema", "x" * 300], 2, "longer than duckdb allows"),
    "PostgreSQL connect_timeout=abc": Case(lambda p: ["run", "--source", f"{PG}/x?connect_timeout=abc"],
                                           2, "?connect_timeout='abc' in the source URL is not a whole number"),
    "PostgreSQL ?port=abc": Case(lambda p: ["run", "--source", f"{PG}/x?port=abc"], 2, "is not a whole number"),
    "MySQL connect_timeout=abc": Case(lambda p: ["run", "--source", f"{MY}/airflow?connect_timeout=abc"],
                                      2, "?connect_timeout='abc' in the source URL is not a whole number"),
    "MySQL TLS option not a boolean": Case(lambda p: ["run", "--source", f"{MY}/airflow?ssl_check_hostname=maybe"],
                                           2, "must be true or false"),
    "MySQL URL without a database": Case(lambda p: ["run", "--source", MY], 2, "names no database"),
    "SQLite file missing": Case(lambda p: ["run", "--source", f"sqlite:///{p.tmp}/[/nope]/airflow.db"],
                                2, "[/nope]/airflow.db does not exist"),  # brackets are not Rich markup
    "SQLite URL without a path": Case(lambda p: ["run", "--source", "sqlite://"], 2, "names no database file"),
    "unknown table": Case(lambda p: ["run", "--source", p.airflow_pg, "--destination", p.mirror, "--tables", "nope"],
                          2, "nope"),
    "resync of a table not synced": Case(lambda p: ["resync", "--source", p.airflow_pg, "--destination", p.mirror,
                                                    "--all-tables", "--table", "nope"], 2, "--table nope"),
    "log capture from SQLite": Case(lambda p: ["run", "--source", p.sqlite, "--destination", p.mirror,
                                               "--capture", "log"], 2, "capture=log is not possible"),
    "log capture into Snowflake": Case(lambda p: ["run", "--source", p.airflow_pg, "--capture", "log", "--destination",
                                                  f"snowflake://u:{SECRET}@acct/DB"], 2, "into snowflake"),
    "DuckDB folder cannot be created": Case(
        lambda p: ["run", "--source", p.airflow_pg, "--all-tables", "--destination",
                   f"duckdb:///{p.file('a_file')}/mirror.duckdb"], 2, "cannot be created"),
    "DuckDB path is a folder": Case(lambda p: ["run", "--source", p.airflow_pg, "--all-tables", "--destination",
                                               f"duckdb:///{p.tmp}"], 2, "is a folder"),
    "not an Airflow database": Case(lambda p: ["run", "--source", p.empty_pg, "--destination", p.mirror],
                                    2, "is not an Airflow metadata database"),
    "status of a mistyped DuckDB path": Case(lambda p: ["status", "--destination", f"duckdb:///{p.tmp}/typo/m.duckdb"],
                                             2, "There is no DuckDB mirror"),
    "Snowflake key file missing": Case(
        lambda p: ["status", "--destination", f"snowflake://u:{SECRET}@acct/DB?private_key_file={p.tmp}/k.p8"],
        2, "private key file"),
    "Snowflake URL without a database": Case(lambda p: ["status", "--destination", f"snowflake://u:{SECRET}@acct"],
                                             2, "has no database"),
    # ---- broken environments: exit 1, one line, and nothing written ----
    "PostgreSQL source unreachable": Case(lambda p: ["run", "--source", f"postgresql://postgres:{SECRET}@127.0.0.1:1/a",
                                                     "--destination", p.mirror], 1, "Cannot connect to the source"),
    "PostgreSQL source database missing": Case(lambda p: ["run", "--source", f"{PG}/no_such_database_xq"],
                                               1, "does not exist"),
    "PostgreSQL role missing": Case(lambda p: ["run", "--source", f"postgresql://nobody_xq:{SECRET}@127.0.0.1/x"],
                                    1, "role \"nobody_xq\" does not exist"),
    "MySQL source unreachable": Case(lambda p: ["run", "--source", f"mysql://root:{SECRET}@127.0.0.1:1/a"],
                                     1, "Cannot connect to the source"),
    "MySQL password refused": Case(lambda p: ["run", "--source", f"{MY}/mysql"], 1, "Access denied"),
    "MySQL TLS asked of a server without it": Case(lambda p: ["run", "--source",
                                                              "mysql://root@127.0.0.1:3306/mysql?ssl=true"],
                                                   1, "SSL is required"),
    "SQLite file that is not a database": Case(lambda p: ["run", "--source", f"sqlite:///{p.file('airflow.db')}",
                                                          "--destination", p.mirror],
                                               1, "SQLITE_NOTADB, the database file is damaged or not a database"),
    "PostgreSQL warehouse unreachable": Case(
        lambda p: ["run", "--source", p.sqlite, "--destination", f"postgresql://postgres:{SECRET}@127.0.0.1:1/w"],
        1, "Cannot connect to the destination"),
    "status of an unreachable warehouse": Case(
        lambda p: ["status", "--destination", f"postgresql://postgres:{SECRET}@127.0.0.1:1/w"],
        1, "Cannot connect to the destination"),
    "DuckDB file that is not a database": Case(lambda p: ["status", "--destination",
                                                          f"duckdb:///{p.file('m.duckdb')}"], 1, "DuckDB file"),
}


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if "airflow" not in path.name}  # the SQLite fixture's own files


def _invoke(args: list[str]) -> Result:
    runner = CliRunner(env={"CDC_SYNC_SOURCE_URL": None, "CDC_SYNC_DESTINATION_URL": None, "CDC_SYNC_SCHEMA": None})
    return runner.invoke(main, args)


def _assert_one_clean_line(result: Result, exit_code: int, says: str) -> str:
    # An exception other than the exit itself is what the real executable would print as a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.stderr
    assert result.exit_code == exit_code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert SECRET not in result.stderr + result.stdout
    return lines[0]


@pytest.mark.parametrize("name", list(CASES))
def test_a_failure_is_one_line_with_the_readme_exit_code_and_writes_nothing(
    name: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default destination (airflow_mirror.duckdb) would land here
    case, places = CASES[name], Places(tmp_path, request)
    args = case.args(places)
    before = _files(tmp_path)
    result = _invoke(args)
    _assert_one_clean_line(result, case.exit_code, case.says)
    assert _files(tmp_path) == before, "a file or folder was created"
    if places._empty_pg:
        schemas = mirror_query(places.empty_pg, "SELECT count(*) FROM information_schema.schemata "
                                                "WHERE schema_name = 'airflow'")
        assert schemas == [(0,)], "a schema was created"


def test_a_malformed_time_in_one_table_fails_that_table_and_the_others_carry_on(
    sqlite_airflow3_source: str, tmp_path: Path
) -> None:
    path = sqlite_airflow3_source.removeprefix("sqlite:///")
    with sqlite3.connect(path) as source:
        source.execute("UPDATE dag_run SET start_date = '2024-13-45 99:00' WHERE rowid = "
                       "(SELECT min(rowid) FROM dag_run)")
    mirror = tmp_path / "m.duckdb"
    result = _invoke(["run", "--source", sqlite_airflow3_source, "--destination", f"duckdb:///{mirror}"])
    line = _assert_one_clean_line(result, 1, "dag_run: The SQLite source's column start_date holds")
    assert "'2024-13-45 99:00'" in line and "correct that value" in line
    with duckdb.connect(str(mirror), read_only=True) as warehouse:
        runs = dict(warehouse.execute("SELECT table_name, status FROM airflow._cdc_runs").fetchall())
        errors = dict(warehouse.execute("SELECT table_name, last_error FROM airflow._cdc_watermarks").fetchall())
        task_instances = warehouse.execute("SELECT count(*) FROM airflow.task_instance").fetchone()[0]
    assert runs.pop("dag_run") == "failed" and set(runs.values()) == {"ok"} and "task_instance" in runs
    assert "start_date" in errors["dag_run"] and errors["task_instance"] is None
    assert task_instances > 0


@pytest.mark.parametrize(("text", "size"), [("512MB", 512 << 20), ("2GB", 2 << 30), ("2 gb", 2 << 30),
                                            ("1.5GiB", 3 << 29), ("64kB", 64 << 10), ("1048576", 1 << 20)])
def test_sizes_are_read_as_postgresql_writes_them(text: str, size: int) -> None:
    assert parse_size(text) == size
