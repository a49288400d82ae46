"""Cold start of an exported ResNet-18: from loading the saved model to its first result, in a fresh
process, for ember's package next to PyTorch's own saved forms of the same model and weights.

    python benchmarks/cold_start.py                     # 224x224, batch 1, 5 fresh processes per contender
    python benchmarks/cold_start.py --size 64 --rounds 3

Contenders, each measured in its own new interpreter (so nothing is cached in the process; the files
are in the OS page cache after the first round, and the medians are over all rounds):

* ember:        ``ember.runtime.load(path)`` (validates the file: ELF header, trailer, three SHA-256
                checksums, then dlopen) -> ``package(x)``
* torch.jit:    ``torch.jit.load(path)`` of a ``torch.jit.trace``-d model -> ``model(x)``
* torch.export: ``torch.export.load(path).module()`` -> ``module(x)``

The import of each framework is timed separately and not counted in "load -> first result": it is the
same for every model. "later calls" is the median of three calls after the first, for scale. The twin
(benchmarks/torch_twins.py) gets ember's weights, and the outputs are compared before anything is
reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

_EMBER = """
import json, sys, time
import numpy as np
t0 = time.perf_counter()
from ember.runtime import load
t1 = time.perf_counter()
package = load(sys.argv[1])
t2 = time.perf_counter()
x = np.load(sys.argv[2])
y = package(x)
t3 = time.perf_counter()
np.save(sys.argv[3], y)
later = []
for _ in range(3):
    t = time.perf_counter()
    package(x)
    later.append(time.perf_counter() - t)
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t1, "later_s": sorted(later)[1]}))
"""

_TORCH = """
import json, sys, time
import numpy as np
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
x = torch.from_numpy(np.load(sys.argv[2]))
with torch.no_grad():
    if sys.argv[4] == "jit":
        model = torch.jit.load(sys.argv[1])
    else:
        model = torch.export.load(sys.argv[1]).module()
    t2 = time.perf_counter()
    y = model(x)
    t3 = time.perf_counter()
    later = []
    for _ in range(3):
        t = time.perf_counter()
        model(x)
        later.append(time.perf_counter() - t)
np.save(sys.argv[3], y.numpy())
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t1, "later_s": sorted(later)[1]}))
"""


def prepare(folder: str, size: int, batch: int) -> dict[str, str]:
    """Export ember's ResNet-18 and save its torch twin (same weights) as TorchScript and torch.export."""
    import ember
    import torch
    from ember.vision.models import resnet18

    sys.path.insert(0, HERE)
    from torch_twins import TWINS

    ember.manual_seed(0)
    model = resnet18().eval()
    x = ember.randn(batch, 3, size, size)
    np.save(os.path.join(folder, "x.npy"), x.numpy())
    paths = {"ember": os.path.join(folder, "resnet18.so"), "torch.jit": os.path.join(folder, "resnet18.pt"),
             "torch.export": os.path.join(folder, "resnet18.pt2")}
    start = time.perf_counter()
    ember.export(model, (x,), paths["ember"])
    size_mb = os.path.getsize(paths["ember"]) / 1e6
    print(f"ember.export: {time.perf_counter() - start:.1f} s, {size_mb:.1f} MB")
    twin = TWINS["resnet18"]().eval()
    state = model.state_dict()
    twin.load_state_dict({k: torch.from_numpy(np.array(v.detach().numpy())) for k, v in state.items()})
    tx = torch.from_numpy(x.numpy())
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(twin, (tx,)), paths["torch.jit"])
        torch.export.save(torch.export.export(twin, (tx,)), paths["torch.export"])
    return paths


def measure(kind: str, path: str, folder: str) -> tuple[dict[str, float], np.ndarray]:
    """One fresh process: import time and load -> first result time, plus the result."""
    out = os.path.join(folder, f"y_{kind}.npy")
    script = _EMBER if kind == "ember" else _TORCH
    args = [sys.executable, "-c", script, path, os.path.join(folder, "x.npy"), out, kind.split(".")[-1]]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=224, help="input height and width")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="fresh processes per contender")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ember-cold-start-") as folder:
        paths = prepare(folder, args.size, args.batch)
        times: dict[str, list[dict[str, float]]] = {k: [] for k in paths}
        results = {}
        for _ in range(args.rounds):
            for kind, path in paths.items():  # interleaved, so machine noise hits every contender alike
                t, results[kind] = measure(kind, path, folder)
                times[kind].append(t)
        for kind in ("torch.jit", "torch.export"):
            err = float(np.abs(results[kind] - results["ember"]).max())
            if err > 1e-3 * max(1.0, float(np.abs(results[kind]).max())):
                raise SystemExit(f"ember's package and {kind} disagree: max |difference| {err:.3g}")
        agree = float(np.abs(results["torch.jit"] - results["ember"]).max())
        print(f"\nResNet-18, input {args.batch}x3x{args.size}x{args.size}, median of {args.rounds} fresh "
              f"processes (outputs agree to {agree:.1e})")
        print(f"{'':14}{'file MB':>9}{'import s':>10}{'load ms':>10}{'load -> first result ms':>26}"
              f"{'later calls ms':>16}")
        for kind, path in paths.items():
            imp, load, first, later = (statistics.median(t[k] for t in times[kind])
                                       for k in ("import_s", "load_s", "first_s", "later_s"))
            mb = os.path.getsize(path) / 1e6
            print(f"{kind:14}{mb:9.1f}{imp:10.2f}{load * 1e3:10.1f}{first * 1e3:26.1f}{later * 1e3:16.1f}")


if __name__ == "__main__":
    main()
