"""Several ``airflow`` commands in one process: ``python tests/airflow_cli_batch.py '["dags", "test", …]' …``.

Each argument is one command line as a JSON list. Every command goes through Airflow's own entry point
(``airflow.__main__.main``), as the ``airflow`` executable would run it, one after the other; only the start-up
(imports, configuration, providers, about 5 s of CPU a process) is paid once. After each command a line
``<MARKER> <index> exit=<code>`` goes to stdout and stderr, so that the caller can tell each command's output and
exit code apart. Run by the Python of the Airflow under test (Airflow 3.x here, 2.11 in its own environment).
"""

from __future__ import annotations

import json
import os
import sys
import traceback

MARKER = "=== airflow-cli-batch command"


def main() -> None:
    from airflow.__main__ import main as airflow_main

    for index, encoded in enumerate(sys.argv[1:]):
        sys.argv = ["airflow", *json.loads(encoded)]
        try:
            airflow_main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except Exception:  # as the executable would end: the traceback, exit code 1; the next command still runs
            traceback.print_exc()
            code = 1
        # Straight to the file descriptors: Airflow's logging may have wrapped sys.stdout and sys.stderr.
        for stream, descriptor in ((sys.__stdout__, 1), (sys.__stderr__, 2)):
            stream.flush()
            os.write(descriptor, f"{MARKER} {index} exit={code}\n".encode())


if __name__ == "__main__":
    main()
