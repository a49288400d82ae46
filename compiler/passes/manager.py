"""The pass manager: runs named passes in order, times each, keeps its statistics, and applies the debug
switches of ``ember.runtime.settings``:

* ``EMBER_CHECKS=1``: ``verify`` the graph after every pass (a broken pass is caught where it breaks);
* ``EMBER_DUMP_IR=dir``: one numbered file per pass, ``00-input.ir``, ``01-<pass>.ir``, ...;
* ``EMBER_DEBUG>=2``: print the per-pass report (time, node counts, statistics) when the run ends;
* ``EMBER_DEBUG>=3``: also print the IR after each pass (only after passes that changed something, unless
  ``print_ir="always"``).

A pass is a function ``graph -> (graph, changed, stats)``; ``stats`` is a dict of counters (what it
removed, what it skipped and why), reported per pass.

>>> from ember.compiler.passes import PassManager, eliminate_dead_code
>>> pm = PassManager([eliminate_dead_code])
>>> # graph, report = pm.run(graph)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ember.compiler.ir.graph import Graph
from ember.compiler.ir.printer import print_graph
from ember.compiler.ir.verifier import VerificationError, verify
from ember.runtime import settings
from ember.runtime.errors import InternalError

PassResult = tuple[Graph, bool, dict[str, Any]]
PassFn = Callable[[Graph], PassResult]


@dataclass
class PassRecord:
    """What one pass did: its name, whether it changed the graph, its counters and its time."""

    name: str
    changed: bool
    stats: dict[str, Any]
    seconds: float
    nodes_before: int
    nodes_after: int


@dataclass
class PassReport:
    records: list[PassRecord] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def __str__(self) -> str:
        lines = [f"{'pass':<32} {'changed':>7} {'nodes':>13} {'ms':>9}  stats"]
        for r in self.records:
            stats = ", ".join(f"{k}={v}" for k, v in sorted(r.stats.items()))
            lines.append(f"{r.name:<32} {'yes' if r.changed else 'no':>7} "
                         f"{f'{r.nodes_before}->{r.nodes_after}':>13} {r.seconds * 1e3:9.2f}  {stats}")
        lines.append(f"{'total':<32} {'':>7} {'':>13} {self.total_seconds * 1e3:9.2f}")
        return "\n".join(lines)


def pass_name(fn: PassFn) -> str:
    return getattr(fn, "pass_name", None) or getattr(fn, "__name__", type(fn).__name__)


class PassManager:
    """Runs ``passes`` (functions, or ``(name, function)`` pairs) in order."""

    def __init__(self, passes: Sequence[PassFn | tuple[str, PassFn]], print_ir: str = "changed",
                 stream: TextIO | None = None) -> None:
        if print_ir not in ("changed", "always"):
            raise InternalError(f"print_ir must be 'changed' or 'always', got {print_ir!r}")
        self.passes: list[tuple[str, PassFn]] = []
        for p in passes:
            name, fn = p if isinstance(p, tuple) else (pass_name(p), p)
            if any(name == n for n, _ in self.passes):
                raise InternalError(f"pass {name!r} is listed twice; give the second a different name")
            self.passes.append((name, fn))
        self.print_ir = print_ir
        self.stream = stream

    def run(self, graph: Graph) -> tuple[Graph, PassReport]:
        report = PassReport()
        checks = settings.get("CHECKS")
        dump_dir = settings.get("DUMP_IR")
        debug = settings.get("DEBUG")
        if checks:
            self._verify(graph, "the input graph")
        if dump_dir:
            self._dump(dump_dir, 0, "input", graph)
        for i, (name, fn) in enumerate(self.passes, start=1):
            before = len(graph.nodes)
            start = time.perf_counter()
            result = fn(graph)
            seconds = time.perf_counter() - start
            graph, changed, stats = self._unpack(name, result)
            report.records.append(PassRecord(name, changed, dict(stats), seconds, before, len(graph.nodes)))
            if checks:
                self._verify(graph, f"pass {name!r}")
            if dump_dir:
                self._dump(dump_dir, i, name, graph)
            if debug >= 3 and (changed or self.print_ir == "always"):
                out = self.stream or sys.stderr
                out.write(f"// ---- IR after {name} ({'changed' if changed else 'unchanged'}) ----\n")
                out.write(print_graph(graph))
        if debug >= 2:  # level 2 is "timings" (settings.py); the IR itself waits for level 3
            (self.stream or sys.stderr).write(str(report) + "\n")
        return graph, report

    @staticmethod
    def _unpack(name: str, result: Any) -> PassResult:
        if not (isinstance(result, tuple) and len(result) == 3 and isinstance(result[0], Graph)
                and isinstance(result[2], dict)):
            raise InternalError(f"pass {name!r} must return (graph, changed, stats),"
                                f" got {type(result).__name__}")
        return result[0], bool(result[1]), result[2]

    @staticmethod
    def _verify(graph: Graph, after: str) -> None:
        try:
            verify(graph)
        except VerificationError as e:
            raise VerificationError(f"after {after}: {e}") from None

    @staticmethod
    def _dump(folder: str, index: int, name: str, graph: Graph) -> None:
        os.makedirs(folder, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        with open(os.path.join(folder, f"{index:02d}-{safe}.ir"), "w", encoding="utf-8") as f:
            f.write(print_graph(graph))
