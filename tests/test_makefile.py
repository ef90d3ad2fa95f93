"""What the two commands install: `make run` the runtime only, `make test` the rest too."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devstack.config import PROJECT_ROOT


def dry_run(target: str, venv: Path) -> str:
    done = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_run_installs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    out = dry_run("run", tmp_path / "fresh-venv")
    assert "pip install --quiet -e .\n" in out
    assert "[dev" not in out and "transformers" not in out
    assert "BROWSER=1" not in out  # no chromium for running
    assert "devstack.run --workers 1" in out


def test_make_test_adds_the_test_extras_and_the_browser(tmp_path: Path) -> None:
    out = dry_run("test", tmp_path / "fresh-venv")
    assert "-e '.[dev,transformers]'" in out and "BROWSER=1" in out
    assert "mypy" in out and "pytest" in out
