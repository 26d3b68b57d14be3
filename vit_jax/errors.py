"""Errors our own checks raise: bad input, named in one line.

`vit_jax.main` and `vit_jax.convert` print a `UserError` as one line (`error: ...`), exit status 1;
any other exception (a bug, or something unexpected inside JAX, Orbax or TensorFlow) keeps its
full traceback. `VIT_JAX_TRACEBACK=1` shows the traceback of a UserError too. Each subclass also
derives from the built-in type callers already catch (ValueError, FileNotFoundError, ...).
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input found by our checks: a config value, a flag, a file, a shape, a workdir."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the input names does not exist (or holds no checkpoint)."""


class OutputExists(UserError, FileExistsError):
    """An output that would be replaced without being asked to (--overwrite)."""


class Diverged(UserError, FloatingPointError):
    """Training produced a non-finite loss; the message names the step and the last good one."""
