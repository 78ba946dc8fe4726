"""``cdc-sync`` as a subprocess of a fault-injection test: ``python -m tests.fault_run [options] -- run …``.

It calls the very entry point of the ``cdc-sync`` executable (:func:`cdc_sync.cli.console_entry`), after three
test settings that a command line cannot give:

* ``--chunk-rows N``: rows staged per MERGE, so that a small source makes a multi-chunk load;
* ``--fakesnow DIR``: Snowflake is fakesnow, its databases kept as files in DIR so that this process and the
  next share them, with Snowflake's DDL rule restored (tests/fakesnow_rules.py);
* ``--lease-seconds S``: the Snowflake cycle lease, so that a killed cycle's lease expires within the test.
"""

from __future__ import annotations

import argparse
import sys


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


if __name__ == "__main__":
    main()
