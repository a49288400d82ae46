"""What an NHWC activation layout could save on the CPU: the NCHW write of batched convolutions, measured.

    python benchmarks/conv_layout.py             # ResNet-18 3x32x32 b32, VGG-11-BN 3x32x32 b8, LeNet-5 b64

With NCHW activations every convolution writes its result NCHW. The per-image schedule does so from the
GEMM's epilogue; the batched and positions schedules (``compiler/kernel/lower_conv_batched.py``) write a
channel-major (or position-major) scratch and then copy it to NCHW, adding the residual and relu on the
way. That copy is the only work an NHWC (or NCHWc) layout would remove from these kernels (the GEMMs
are the same products with the operands swapped; the positions schedule is the NHWC-form GEMM), while it
would add layout conversions at the graph's edges and need NHWC pooling kernels. This prints, per model,
the compiled model's time and the time of those copies, each copy timed as its own kernel (a permute of
the conv's output shape), so the ceiling of the NHWC gain is measured rather than guessed. Times are
process CPU time medians (the machine is shared), 2 threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("EMBER_NUM_THREADS", "2")

import ember  # noqa: E402
import numpy as np  # noqa: E402
from ember.compiler.codegen.llvm.program import compile_groups  # noqa: E402
from ember.compiler.dtypes import float32  # noqa: E402
from ember.compiler.kernel.group import FusionGroup, GroupNode  # noqa: E402
from ember.compiler.kernel.lower_conv_batched import choose_schedule  # noqa: E402
from ember.compiler.ops.registry import TensorType  # noqa: E402
from ember.vision import models  # noqa: E402

ROWS = [("resnet18", (32, 3, 32, 32)), ("vgg11_bn", (8, 3, 32, 32)), ("resnet18", (1, 3, 32, 32)),
        ("lenet5", (64, 1, 28, 28))]


def _median_ms(fn: Callable[[], Any], runs: int) -> float:
    fn()
    samples = []
    for _ in range(runs):
        t = time.process_time()
        fn()
        samples.append(time.process_time() - t)
    return statistics.median(samples) * 1e3


def _copy_kernel(shape: tuple[int, ...]) -> Callable[[], Any]:
    """A kernel doing what the NCHW write does: read [N, P, C] (position-major), write [N, C, P]."""
    n, c, p = shape[0], shape[1], int(np.prod(shape[2:]))
    t_in, t_out = TensorType((n, p, c), float32), TensorType((n, c, p), float32)
    group = FusionGroup("nchw_write", [GroupNode("permute", ("a",), ("b",), {"dims": (0, 2, 1)}),
                                       GroupNode("relu", ("b",), ("o",))],
                        {"a": t_in, "b": t_out, "o": t_out}, ["a"], ["o"])
    exe = compile_groups("nchw_write", [group], ["a"], ["o"])
    a = np.random.default_rng(0).standard_normal((n, p, c)).astype(np.float32)
    return lambda: exe(a)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    print(f"{'model':<10}{'input':>16}{'model ms':>10}{'writes':>8}{'write ms':>10}{'share':>8}   (CPU time)")
    for name, shape in ROWS:
        ember.manual_seed(0)
        model = getattr(models, name)().eval()
        x = ember.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        fast = ember.compile(model)
        with ember.no_grad():
            fast(x)
            graph = fast.compiled_for(x).result.graph
            outs = [tuple(n.outputs[0].shape) for n in graph.nodes if n.op.name == "conv"]
            model_ms = _median_ms(lambda fast=fast, x=x: fast(x), args.runs)
        writes = [s for s in outs if choose_schedule(s[0], int(np.prod(s[2:])))[0] != "per_image"]
        write_ms = sum(_median_ms(_copy_kernel(s), args.runs) for s in writes)
        print(f"{name:<10}{'x'.join(map(str, shape)):>16}{model_ms:>10.2f}{len(writes):>8}{write_ms:>10.3f}"
              f"{write_ms / model_ms:>8.1%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
