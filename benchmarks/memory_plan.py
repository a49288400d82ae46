"""Memory figures of the arena planner for resnet18, vgg11_bn, lenet5 and an MLP (batch 1, eval mode).

Run: ``python benchmarks/memory_plan.py`` (add ``--live`` for the pipeline that keeps parameters as
inputs; the default is the frozen inference pipeline). For each model: the kernels after the pipeline
and fusion, the arena buffers, the naive sum (every intermediate its own memory), the lower bound (the
largest total of bytes live at one call), the planned arena, and which heuristic won.
"""

from __future__ import annotations

import argparse
from typing import Any

import ember
from ember.compiler.kernel.program import Program, build_program
from ember.compiler.passes import optimize
from ember.compiler.passes.fuse import fuse


def _mlp() -> Any:
    nn = ember.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))


def models() -> dict[str, tuple[Any, tuple[int, ...]]]:
    from ember.vision.models import lenet5, resnet18, vgg11_bn

    return {"resnet18": (resnet18, (1, 3, 224, 224)), "vgg11_bn": (vgg11_bn, (1, 3, 224, 224)),
            "lenet5": (lenet5, (1, 1, 28, 28)), "mlp": (_mlp, (1, 1, 28, 28))}


def plan_model(build: Any, shape: tuple[int, ...], freeze: bool = True) -> tuple[Program, int]:
    """The program (lowered kernels and the planned arena) of one model, and its kernel count."""
    ember.manual_seed(0)
    model = build()
    model.eval()
    graph, _ = optimize(ember.trace(model, ember.randn(*shape)), freeze=freeze)
    plan = fuse(graph)
    outs = [plan.names[id(v)] for v in graph.output_values()]
    ins = [v.name for v in graph.user_inputs]
    used = {x for g in plan.groups for x in g.inputs}
    params = [v.name for v in [*graph.inputs, *graph.constants] if v.kind != "input" and v.name in used]
    return build_program(graph.name, plan.groups, ins, outs, params), plan.kernel_count


def row(name: str, program: Program, kernels: int) -> str:
    m = program.memory
    kib = 1024
    return (f"| {name} | {kernels} | {len(m.lifetimes)} | {m.naive_bytes / kib:.1f} "
            f"| {m.lower_bound / kib:.1f} | {m.arena_bytes / kib:.1f} "
            f"| {m.arena_bytes / max(m.lower_bound, 1):.3f} | {m.naive_bytes / max(m.arena_bytes, 1):.1f}x "
            f"| {len(m.inplace)} | {m.algorithm} |")


HEADER = ("| model | kernels | buffers | naive KiB | lower bound KiB | arena KiB | arena / bound "
          "| naive / arena | in place | algorithm |\n|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", action="store_true",
                        help="keep parameters as inputs (ember.compile's pipeline)")
    args = parser.parse_args()
    print(HEADER)
    for name, (build, shape) in models().items():
        program, kernels = plan_model(build, shape, freeze=not args.live)
        print(row(name, program, kernels))


if __name__ == "__main__":
    main()
