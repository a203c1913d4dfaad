"""What reaches the terminal: names with control characters escaped, native libraries' chatter caught.

A file name is data, not terminal commands: a newline or an ANSI escape in it must not forge a line or
recolour the screen. Native libraries (libjpeg, libpng, ONNX Runtime, LiteRT) write to file descriptor 2
directly, around Python; their lines would break the one-line error, so they are caught and handed back.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator


def printable(text: str) -> str:
    """``text`` with control, format and undecodable characters as ``\\xNN``/``\\uNNNN`` escapes."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


@dataclass
class Caught:
    """What native code wrote to fd 2 inside ``native_stderr`` (filled when the block ends)."""

    text: str = ""

    @property
    def lines(self) -> list[str]:
        return [ln.strip() for ln in self.text.splitlines() if ln.strip()]


@contextlib.contextmanager
def native_stderr(enabled: bool = True) -> Iterator[Caught]:
    """Catch everything written to fd 2 meanwhile (Python's own ``sys.stderr`` included) into ``Caught``."""
    caught = Caught()
    if not enabled:
        yield caught
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield caught
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            caught.text = sink.read().decode(errors="replace")
