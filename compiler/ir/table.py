"""A per-node table: op, scope, result shapes, parameters read first by the node, FLOP estimate."""

from __future__ import annotations

from ember.compiler.ir.flops import estimate_flops
from ember.compiler.ir.graph import Graph
from ember.compiler.ir.printer import format_type


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def node_rows(graph: Graph) -> list[dict[str, object]]:
    """One dict per node: index, op, scope, shapes, params (elements of parameters first read here), flops."""
    counted: set[int] = set()
    rows = []
    for i, node in enumerate(graph.nodes):
        params = 0
        for v in node.value_inputs:
            if v.kind in ("parameter", "buffer") and id(v) not in counted:
                counted.add(id(v))
                params += v.type.numel if v.kind == "parameter" else 0
        rows.append({"index": i, "op": node.op.name, "scope": node.scope or "-",
                     "shapes": ", ".join(format_type(v.type) for v in node.outputs),
                     "params": params, "flops": estimate_flops(node)})
    return rows


def node_table(graph: Graph) -> str:
    """The table as text, with totals; FLOPs shown as '?' where there is no estimate."""
    rows = node_rows(graph)
    header = ("#", "op", "scope", "output", "params", "FLOPs")
    body = [(str(r["index"]), str(r["op"]), str(r["scope"]), str(r["shapes"]), _human(r["params"]),  # type: ignore[arg-type]
             "?" if r["flops"] is None else _human(r["flops"])) for r in rows]  # type: ignore[arg-type]
    total_params = sum(v.type.numel for v in graph.inputs if v.kind == "parameter")
    known = [r["flops"] for r in rows if r["flops"] is not None]
    unknown = len(rows) - len(known)
    total = _human(sum(known)) + (f" (+{unknown} ops without an estimate)" if unknown else "")  # type: ignore[arg-type]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 4 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*b) for b in body]
    lines.append(f"total: {len(rows)} nodes, {_human(total_params)} parameters, {total} FLOPs")
    return "\n".join(lines)

