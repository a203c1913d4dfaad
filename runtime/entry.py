"""The ``liveness-edge`` console script. Importing OpenCV and NumPy takes about half a second; a Ctrl-C or
SIGTERM in that window would otherwise end in Python's own traceback (or a silent 143), not exit 130."""
from __future__ import annotations

import signal
import sys


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Import the CLI with interrupts turned into exit 130, then run it."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        from .cli import PROG, main as cli_main
    except KeyboardInterrupt:
        print("liveness-edge: error: interrupted while starting", file=sys.stderr)
        return 130
    try:
        return cli_main()
    except KeyboardInterrupt:  # between the import and the CLI's own handlers
        print(f"{PROG}: error: interrupted while starting", file=sys.stderr)
        return 130
