"""One error contract for the five CLIs: one line, a documented exit code per kind of failure, --debug keeps
the cause, Ctrl-C is 130; the codes that used to share 2 are now distinct."""
from __future__ import annotations

import importlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from liveness_edge.runtime.errors import (
    INTERRUPTED_EXIT_CODE,
    ExportFailed,
    LivenessEdgeError,
    ModelError,
    NothingGathered,
    UsageError,
    run_cli,
)

CLI_MODULES = ["runtime.cli", "benchmarks.cli", "train.gather_cli", "train.cli", "export.cli"]


def test_run_cli_one_line_per_kind_of_failure(capsys):
    def fails(error: BaseException):
        def body() -> int:
            raise error
        return body

    assert run_cli("tool", fails(ModelError("bad file"))) == 3
    assert capsys.readouterr().err == "tool: error: bad file\n"
    assert run_cli("tool", fails(KeyError("x"))) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert run_cli("tool", fails(KeyboardInterrupt()), "stopped") == INTERRUPTED_EXIT_CODE
    assert capsys.readouterr().err == "tool: stopped\n"
    def chained() -> int:
        try:
            raise OSError("disk")
        except OSError as cause:
            raise ModelError("bad") from cause

    with pytest.raises(ModelError) as e:  # --debug: the exception itself, with its cause
        run_cli("tool", chained, debug=True)
    assert isinstance(e.value.__cause__, OSError)


def test_exit_codes_are_distinct_per_meaning():
    codes = {cls.__name__: cls.exit_code for cls in LivenessEdgeError.__subclasses__()}
    assert codes["UsageError"] == 2 and codes["ExportFailed"] == 10 and codes["NothingGathered"] == 11
    meaningful = [c for name, c in codes.items() if name != "SplitLeak"]
    assert len(meaningful) == len(set(meaningful))  # no code means two things
    from liveness_edge.export.options import ExportError

    assert issubclass(ExportError, ExportFailed) and ExportError("x").exit_code == 10


@pytest.mark.parametrize("module", CLI_MODULES)
def test_every_cli_goes_through_run_cli(module):
    source = Path(importlib.util.find_spec(f"liveness_edge.{module}").origin).read_text()
    main = source[source.index("def main("):]
    assert "run_cli(" in main


def test_gather_with_no_face_exits_11(tmp_path, capsys):
    from liveness_edge.train.gather_cli import main

    (tmp_path / "in" / "real").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "in" / "real" / "blank.png"), np.full((120, 160, 3), 90, np.uint8))
    assert main(["--input", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == NothingGathered.exit_code
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("liveness-gather: error: no face crop written")  # after tqdm's bar


def test_bench_bad_counts_are_a_usage_error(capsys):
    from liveness_edge.benchmarks.cli import main

    assert main(["--frames", "0"]) == UsageError.exit_code
    assert "--frames must be >= 1" in capsys.readouterr().err
