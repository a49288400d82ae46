"""The typed errors every layer of ember raises.

Each type also derives from the built-in exception PyTorch raises in the same situation, so code written
against PyTorch (``except RuntimeError``) still catches it. Messages are built where the error is raised
and name the op, the shapes or dtypes involved, and what to do instead.
"""

from __future__ import annotations


class EmberError(Exception):
    """Base class of every error ember raises on purpose."""


class ShapeError(EmberError, RuntimeError):
    """Operand shapes do not fit the op (PyTorch raises RuntimeError here)."""


class DTypeError(EmberError, TypeError, RuntimeError):
    """An operand has a dtype the op does not accept."""


class DimError(EmberError, IndexError):
    """A dimension index is out of range (PyTorch raises IndexError here)."""


class ArgumentError(EmberError, ValueError):
    """An argument has an invalid value (a negative size, an unknown mode name, ...)."""


class AutogradError(EmberError, RuntimeError):
    """Misuse of autograd: backward twice, in-place on a leaf, a saved tensor modified in place."""


class TraceError(EmberError, RuntimeError):
    """The forward pass does something a static graph cannot capture."""


class CompileError(EmberError, RuntimeError):
    """The compiler cannot compile a graph (an op without a kernel, a failed code generation)."""


class DeviceError(EmberError, RuntimeError):
    """A device is missing or tensors live on different devices."""


class PackageError(EmberError, ValueError):
    """A file (checkpoint, exported package) is truncated, corrupted, foreign or unsafe."""


class ParseError(EmberError, ValueError):
    """IR text that does not parse; carries the line and column."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(f"{line}:{column}: {message}" if line else message)
        self.line = line
        self.column = column


class InternalError(EmberError, RuntimeError):
    """A broken invariant inside ember: a bug to report, never the user's fault."""
