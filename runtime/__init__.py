"""ember.runtime: runs compiled executables and exported packages.

The runtime sits at the bottom of the dependency chain (frontend -> compiler -> runtime): it imports
neither the compiler nor the frontend, nor llvmlite, so a deployed model needs only numpy and ctypes.
The error types and the settings module live here for the same reason: every layer can import them.
"""

from ember.runtime.aot import load  # validates an exported package (ember.export), then runs it
from ember.runtime.errors import (
    CompileError,
    DeviceError,
    DTypeError,
    EmberError,
    InternalError,
    PackageError,
    ParseError,
    ShapeError,
    TraceError,
)

__all__ = [
    "CompileError",
    "DTypeError",
    "DeviceError",
    "EmberError",
    "InternalError",
    "PackageError",
    "ParseError",
    "ShapeError",
    "TraceError",
    "load",
]
