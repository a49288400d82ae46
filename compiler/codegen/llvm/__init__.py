"""The LLVM back end: a JIT/AOT layer over llvmlite (``jit``) and generated kernel templates (``gemm``).

Nothing here imports llvmlite at package import time; the submodules do, and ``jit`` initializes LLVM
lazily on first use, so ``import ember`` stays fast and works without llvmlite installed.
"""
