"""``cdc-sync`` as a subprocess of a fault-injection test: ``python -m tests.fault_run [options] -- run …``.

It calls the very entry point of the ``cdc-sync`` executable (:func:`cdc_sync.cli.console_entry`), after three
test settings that a command line cannot give:

* ``--chunk-rows N``: rows staged per MERGE, so that a small source makes a multi-chunk load;
* ``--fakesnow DIR``: Snowflake is fakesnow, its databases kept as files in DIR so that this process and the
  next share them, with Snowflake's DDL rule restored (tests/fakesnow_rules.py);
* ``--lease-seconds S``: the Snowflake cycle lease, so that a killed cycle's lease expires within the test.

:func:`launch` runs it as a process forked from a server that imported cdc_sync and fakesnow once (multiprocessing's
``forkserver``): still a process of its own, with its own connections, killed by SIGKILL at a ``kill`` fault, but
without the second or so of imports that a new interpreter pays on every run of a fault matrix.
"""

from __future__ import annotations

import argparse
import atexit
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Imported once by the fork server; each run's process starts with them loaded.
PRELOAD = ["cdc_sync.cli", "cdc_sync.cycle", "cdc_sync.replicate", "cdc_sync.destinations.duckdb",
           "cdc_sync.destinations.postgres", "cdc_sync.destinations.snowflake", "cdc_sync.sources.postgres",
           "fakesnow", "tests.fakesnow_rules", "tests.fault_run"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunk-rows", type=int)
    parser.add_argument("--fakesnow")
    parser.add_argument("--lease-seconds", type=float)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    arguments = options.command[1:] if options.command[:1] == ["--"] else options.command
    from cdc_sync import cli, replicate
    from cdc_sync.destinations import snowflake

    if options.chunk_rows:
        replicate.MERGE_CHUNK_ROWS = options.chunk_rows
    if options.lease_seconds is not None:
        snowflake.DEFAULT_LEASE_SECONDS = options.lease_seconds
    sys.argv = ["cdc-sync", *arguments]
    if not options.fakesnow:
        cli.console_entry()
        return
    import fakesnow

    from tests.fakesnow_rules import make_ddl_commit, skip_null_comments

    skip_null_comments()
    make_ddl_commit()
    with fakesnow.patch(db_path=options.fakesnow):
        cli.console_entry()


def _forked(arguments: list[str], environment: dict[str, str], stdout: str, stderr: str) -> None:
    """The run's process: the caller's environment and working directory, output to files, then :func:`main`;
    the interpreter's exit functions run as at a normal exit (a SIGKILL skips them, as it would)."""
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(ROOT)
    for path, descriptor in ((stdout, 1), (stderr, 2)):
        file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(file, descriptor)
        os.close(file)
    sys.argv = ["tests.fault_run", *arguments]
    try:
        main()
    finally:
        atexit._run_exitfuncs()


_context = multiprocessing.get_context("forkserver")


def launch(arguments: list[str], environment: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``python -m tests.fault_run ARGUMENTS`` with ``environment``, as ``subprocess.run(capture_output=True,
    text=True)`` returns it: the exit code (negative: the signal that ended it), stdout and stderr."""
    _context.set_forkserver_preload(PRELOAD)  # read when the server starts, the first time only
    with tempfile.TemporaryDirectory(prefix="cdc-sync-fault-run-") as directory:
        stdout, stderr = os.path.join(directory, "stdout"), os.path.join(directory, "stderr")
        process = _context.Process(target=_forked, args=(arguments, environment, stdout, stderr))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["tests.fault_run", *arguments], timeout)
        read = [Path(path).read_text(errors="replace") if os.path.exists(path) else "" for path in (stdout, stderr)]
    return subprocess.CompletedProcess(["tests.fault_run", *arguments], process.exitcode, *read)


if __name__ == "__main__":
    main()
