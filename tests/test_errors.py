"""`python -m vit_jax.main` errors: our checks are one line; anything else keeps its traceback.

The CLI runs in a subprocess with `vit_jax.train` replaced by a stand-in that raises (a real
config is loaded; no data, no training), so each case costs an interpreter start, not a run.
"""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

from vit_jax import config_lib, errors

ROOT = pathlib.Path(__file__).resolve().parents[1]
STAND_IN = """
import sys, types
import jax.numpy as jnp
from absl import app
from vit_jax import errors, main

CASE = sys.argv[2]


def train_and_evaluate(config, workdir, *, restart=False):
    if CASE == "user":
        raise errors.UserError("config.data.root='/nowhere': folder not found")
    jnp.split(jnp.ones(3), 2)  # A ValueError raised inside JAX: not one of our checks.

sys.modules["vit_jax.train"] = types.SimpleNamespace(train_and_evaluate=train_and_evaluate)
sys.argv = ["vit_jax.main", "--config=configs/fashion_mnist.py", "--workdir=" + sys.argv[1]]
app.run(main.main, flags_parser=main.parse_flags)
"""


def run_main(tmp_path, case, **env):
    script = tmp_path / "stand_in.py"  # A file, so that tracebacks show its source lines.
    script.write_text(STAND_IN)
    cmd = [sys.executable, str(script), str(tmp_path), case]
    full_env = {**os.environ, **env}
    full_env.pop("XLA_FLAGS", None)
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)


def test_our_check_is_one_line_and_its_traceback_is_on_request(tmp_path):
    out = run_main(tmp_path, "user")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: config.data.root='/nowhere': folder not found"
    ], out.stderr
    out = run_main(tmp_path, "user", VIT_JAX_TRACEBACK="1")
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr
    assert "in train_and_evaluate" in out.stderr and "UserError: config.data.root" in out.stderr


def test_a_library_error_keeps_its_traceback(tmp_path):
    out = run_main(tmp_path, "library")
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr, out.stderr
    assert "jax" in out.stderr and "jnp.split" in out.stderr  # The frames that lead to it.
    last = out.stderr.strip().splitlines()[-1]
    assert last == "ValueError: array split does not result in an equal division: rest is 1"
    assert "error:" not in out.stderr


def test_our_error_types_are_the_builtin_ones_callers_catch():
    assert issubclass(config_lib.ConfigError, errors.UserError)
    for cls, builtin in (
        (errors.MissingFile, FileNotFoundError),
        (errors.OutputExists, FileExistsError),
        (errors.Diverged, FloatingPointError),
    ):
        assert issubclass(cls, errors.UserError) and issubclass(cls, builtin)
    with pytest.raises(FileNotFoundError, match="x: not found"):
        raise errors.MissingFile("x: not found")


def test_the_library_raises_no_bare_builtin_errors():
    """A bare ValueError from our code would print a traceback where a one-line error is meant.

    vit_jax/benchmark has its own CLI, which prints any ValueError as one line.
    """
    bare = ("ValueError", "FileNotFoundError", "FileExistsError", "FloatingPointError")
    found = []
    for path in sorted((ROOT / "vit_jax").rglob("*.py")):
        if "benchmark" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            exc = node.exc if isinstance(node, ast.Raise) else None
            if isinstance(exc, ast.Call) and getattr(exc.func, "id", None) in bare:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"raise errors.UserError (or a subclass) instead: {found}"
