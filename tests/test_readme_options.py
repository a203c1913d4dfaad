"""The README's option table and ``liveness-edge --help`` cannot drift: same options, same defaults (which
argparse takes from the options dataclasses)."""
from __future__ import annotations

import re
from pathlib import Path

from liveness_edge.runtime import cli
from liveness_edge.runtime.pipeline import PipelineOptions
from liveness_edge.runtime.quality import QualityOptions
from liveness_edge.runtime.smoothing import SmoothingOptions

README = Path(__file__).resolve().parent.parent / "README.md"
REPO = README.parent


def readme_rows() -> list[tuple[list[str], str]]:
    """(option strings, default cell) of each row of the table under ``| option | default | meaning |``."""
    lines = README.read_text().splitlines()
    start = lines.index("| option | default | meaning |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append((re.findall(r"`(--[a-z0-9-]+)", cells[0]), cells[1]))
    return rows


def shown(default: object) -> str:
    """How the README writes a default."""
    if default is False:
        return "off"
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, Path):
        return default.resolve().relative_to(REPO).as_posix()
    return str(default)


def test_readme_table_lists_every_option_with_its_default():
    actions = {s: a for a in cli.build_parser()._actions for s in a.option_strings if s not in ("-h", "--help")}
    rows = readme_rows()
    documented = [o for options, _ in rows for o in options]
    assert sorted(documented) == sorted(actions), "README option table and --help differ"
    for options, cell in rows:
        for option in options:
            default = actions[option].default
            if default is None:
                said = re.search(r"\(default ([^;)]+)", actions[option].help or "")
                if said and actions[option].const is None:  # resolved later (e.g. from the manifest): README agrees
                    assert cell == said.group(1).strip(), (option, cell, said.group(1))
                else:
                    assert cell == "—" or re.search("[a-z]", cell), (option, cell)
            else:
                assert cell == shown(default), (option, cell, default)


def test_argparse_defaults_are_the_dataclass_defaults():
    parser = cli.build_parser()
    options = cli.options_from_args(parser.parse_args(["--image", "x.jpg"]))
    assert options.pipeline == PipelineOptions(running_mode="image")
    video = cli.options_from_args(parser.parse_args(["--video", "x.mp4"]))
    assert video.pipeline == PipelineOptions(running_mode="video")  # the source sets the mode
    assert options.pipeline.smoothing == SmoothingOptions() and options.pipeline.quality == QualityOptions()
    assert parser.get_default("min_inside") == QualityOptions.min_inside == 0.8  # the README once said 0.6
