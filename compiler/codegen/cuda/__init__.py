"""CUDA code generation: kernel IR -> CUDA C (schedule.py, kernels.py, exprs.py, gemm.py), compiled by
NVRTC (nvrtc.py) into a cubin plus a launch table for ``runtime/cuda.py`` (program.py)."""
