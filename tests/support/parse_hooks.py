"""Parse hooks for the ingest pipeline's worker processes, importable there by name: the real
`parse_file`, except on files whose name says otherwise.

- a name containing "slow": the parse sleeps for an hour (a parse that never ends);
- a name containing "crash": the parser process kills itself (a native crash in a library).

Both are real behaviour of a real process, not mocks of the pool: the pipeline must stop the
first at its time limit and survive the second.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ingest.parsing import ParsedDocument, parse_file


def slow_or_crashing_parse(path: Path) -> ParsedDocument:
    if "slow" in path.name:
        time.sleep(3600)
    if "crash" in path.name:
        os.kill(os.getpid(), signal.SIGKILL)
    return parse_file(path)
