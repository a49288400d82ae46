"""Code generation back ends: ``llvm`` (host CPU machine code through llvmlite) and later ``cuda``."""
