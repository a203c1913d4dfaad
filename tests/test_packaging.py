"""Packaging: the supported Python versions, the device install without TensorFlow, and a checkout root that
does not shadow an installed (non-editable) package."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from liveness_edge.export import cli as export_cli
from liveness_edge.runtime.errors import BackendUnavailable
from liveness_edge.train import cli as train_cli

ROOT = Path(__file__).resolve().parents[1]
NOT_PACKAGED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "tests",
                                      "bench_results", "runs", ".pytest_cache")


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_runtime_python_versions_are_allowed_and_declared():
    cfg = _setup_cfg()
    allowed = SpecifierSet(cfg["options"]["python_requires"])
    classifiers = cfg["metadata"]["classifiers"]
    for version in ("3.11", "3.12", "3.13"):
        assert version in allowed
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert "3.10" not in allowed


@pytest.mark.parametrize(("cli", "argv", "prog"), [
    (train_cli, ["--help"], "liveness-train"),
    (train_cli, ["fit", "data", "--model", "livenessnet", "--out", "run"], "liveness-train"),
    (export_cli, [], "export-models"),
    (export_cli, ["--verify"], "export-models"),
])
def test_tools_that_need_tensorflow_name_the_extra_on_a_device_install(monkeypatch, capsys, cli, argv, prog):
    """A None entry in sys.modules makes both the availability check and any import of the module fail."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "keras", None)
    assert cli.main(argv) == BackendUnavailable.exit_code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f'{prog}: error: {captured.err.split(": error: ")[1]}'  # one line, the tool's name
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert 'needs TensorFlow, the [train] extra: pip install ".[train]"' in captured.err


@pytest.mark.slow
def test_the_checkout_root_does_not_shadow_a_non_editable_install(tmp_path):
    """Install the package (not editable, no dependencies) into a folder, then import it from the checkout root:
    the root's own folders must not stand in for the installed package."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_PACKAGED)  # build a copy: no build/ or egg-info in the checkout
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import liveness_edge, liveness_edge.runtime.pipeline as p; "
            "print(liveness_edge.__file__); print(p.__file__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(line.startswith(str(target)) for line in result.stdout.split()), result.stdout
    module = subprocess.run([sys.executable, "-m", "liveness_edge.runtime.cli", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert module.returncode == 0 and "usage: liveness-edge" in module.stdout, module.stderr
