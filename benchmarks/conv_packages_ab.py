"""Before/after timing of two versions of the compiler, in one process, through AOT packages.

Two versions of ember cannot be imported into one process, but their exported packages can be loaded
side by side. Export the conv rows with each version, then time them alternately:

    git archive <old-commit> | tar -x -C /tmp/old          # then lay it out as an importable package:
    mkdir -p /tmp/oldpkg && cp -r /tmp/old/frontend /tmp/oldpkg/ember \\
        && cp -r /tmp/old/compiler /tmp/oldpkg/ember/compiler && cp -r /tmp/old/runtime /tmp/oldpkg/ember/runtime
    (cd /tmp && PYTHONPATH=/tmp/oldpkg python /work/main/benchmarks/conv_packages_ab.py export /tmp/pk_before)
    python benchmarks/conv_packages_ab.py export /tmp/pk_after
    python benchmarks/conv_packages_ab.py time /tmp/pk_before /tmp/pk_after --runs 20

Outputs are checked equal before timing; figures are medians of wall and process CPU time (the CPU
time is the steadier one on a shared machine), 2 threads, ratio = before / after.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time

import numpy as np

ROWS = [("lenet5", (64, 1, 28, 28)), ("resnet18", (1, 3, 32, 32)), ("resnet18", (32, 3, 32, 32)),
        ("resnet18", (1, 3, 224, 224)), ("vgg11_bn", (8, 3, 32, 32))]


def export(folder: str) -> None:
    os.environ["EMBER_CACHE_DIR"] = "off"
    import ember
    from ember.vision import models

    os.makedirs(folder, exist_ok=True)
    for name, shape in ROWS:
        ember.manual_seed(0)
        model = getattr(models, name)().eval()
        x = ember.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        with ember.no_grad():
            ember.export(model, (x,), os.path.join(folder, f"{name}_{'x'.join(map(str, shape))}.so"))
        print("exported", name, shape, "with", ember.__file__, flush=True)


def compare(before: str, after: str, runs: int) -> None:
    from ember.runtime import load

    for path in sorted(glob.glob(os.path.join(before, "*.so"))):
        other = os.path.join(after, os.path.basename(path))
        if not os.path.exists(other):
            continue
        label = os.path.basename(path)[:-3]
        shape = tuple(int(s) for s in label.split("_")[-1].split("x"))
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        fns = {"before": load(path), "after": load(other)}
        np.testing.assert_allclose(fns["before"](x, num_threads=2), fns["after"](x, num_threads=2),
                                   rtol=1e-3, atol=1e-4)
        wall: dict[str, list[float]] = {k: [] for k in fns}
        cpu: dict[str, list[float]] = {k: [] for k in fns}
        while len(wall["after"]) < runs:
            for k, fn in fns.items():
                for _ in range(2):
                    t, c = time.perf_counter(), time.process_time()
                    fn(x, num_threads=2)
                    wall[k].append(time.perf_counter() - t)
                    cpu[k].append(time.process_time() - c)
        w = {k: statistics.median(v) * 1e3 for k, v in wall.items()}
        c = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
        print(f"{label:<24} wall {w['before']:8.2f} -> {w['after']:8.2f} ms x{w['before'] / w['after']:5.2f}   "
              f"cpu {c['before']:8.2f} -> {c['after']:8.2f} ms x{c['before'] / c['after']:5.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["export", "time"])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    if args.mode == "export":
        export(args.folders[0])
    else:
        compare(args.folders[0], args.folders[1], args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
