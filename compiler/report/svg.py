"""The two pictures of the compile report, drawn as SVG text in Python (no Graphviz, nothing fetched).

``graph_svg``: a layered drawing of the optimized graph. A node's layer is its longest path from the
graph inputs; a node no graph input reaches (weight preparation) sits one layer above its first reader;
within a layer nodes follow the mean position of their producers (one barycentre sweep), which keeps
most edges short. Every node is filled with its kernel's colour and links to its row in the node table
(scope, source line).

``memory_svg``: the arena over time. Each intermediate buffer is a rectangle spanning the kernel calls
it is live in (x) and its bytes in the arena (y); the arena size and the lower bound (the most bytes
live at one call, which no placement can beat) are drawn as lines.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ember.compiler.ir.graph import Graph, Value
from ember.compiler.ir.printer import format_type

__all__ = ["graph_svg", "kernel_colour", "memory_svg", "value_numbers"]

_BOX_W, _BOX_H, _GAP_X, _GAP_Y, _MARGIN = 168, 44, 18, 46, 20


def kernel_colour(index: int | None) -> str:
    """A distinct light colour per kernel (golden-angle hues); grey for values outside any kernel."""
    if index is None:
        return "#e8e8e8"
    return f"hsl({(index * 137.508) % 360:.1f}, 70%, 82%)"


def _layers(graph: Graph) -> tuple[dict[str, int], dict[str, list[str]], dict[str, list[str]]]:
    """Layer of every drawn vertex ("in:i", "n:i", "out:j"), with predecessor and successor lists."""
    where: dict[int, str] = {}
    preds: dict[str, list[str]] = {}
    for i, v in enumerate(graph.user_inputs):
        where[id(v)] = f"in:{i}"
        preds[f"in:{i}"] = []
    for i, node in enumerate(graph.nodes):
        key = f"n:{i}"
        preds[key] = list(dict.fromkeys(where[id(v)] for v in node.value_inputs if id(v) in where))
        for v in node.outputs:
            where[id(v)] = key
    for j, leaf in enumerate(graph.flat_outputs):
        if isinstance(leaf, Value) and id(leaf) in where:
            preds[f"out:{j}"] = [where[id(leaf)]]
    succs: dict[str, list[str]] = {k: [] for k in preds}
    for k, ps in preds.items():
        for p in ps:
            succs[p].append(k)
    layer: dict[str, int] = {}
    fed: set[str] = set()  # vertices a graph input reaches; the rest only prepare weights
    for k, ps in preds.items():  # insertion order is a topological order
        layer[k] = 1 + max((layer[p] for p in ps), default=-1)
        if k.startswith("in:") or any(p in fed for p in ps):
            fed.add(k)
    for k in reversed(list(preds)):  # weight preparation: just above its first reader
        if k not in fed and succs[k]:
            layer[k] = max(0, min(layer[s] for s in succs[k]) - 1)
    return layer, preds, succs


def _positions(layer: dict[str, int], preds: dict[str, list[str]]) -> dict[str, tuple[float, float]]:
    rows: dict[int, list[str]] = {}
    for k, lv in layer.items():
        rows.setdefault(lv, []).append(k)
    width = max(len(r) for r in rows.values()) * (_BOX_W + _GAP_X)
    pos: dict[str, tuple[float, float]] = {}
    for lv in sorted(rows):
        row = rows[lv]
        order = {k: i for i, k in enumerate(row)}

        def centre(k: str, order: dict[str, int] = order) -> float:
            xs = [pos[p][0] for p in preds[k] if p in pos]
            return sum(xs) / len(xs) if xs else order[k] * (_BOX_W + _GAP_X)
        row.sort(key=lambda k: (centre(k), order[k]))
        start = (width - len(row) * (_BOX_W + _GAP_X)) / 2
        for i, k in enumerate(row):
            pos[k] = (_MARGIN + start + i * (_BOX_W + _GAP_X), _MARGIN + lv * (_BOX_H + _GAP_Y))
    return pos


def value_numbers(graph: Graph) -> dict[int, str]:
    """id(Value) -> its name in the text IR: graph inputs by name, node results %0, %1, ... (as printed)."""
    out = {id(v): v.name for v in [*graph.inputs, *graph.constants]}
    k = 0
    for node in graph.nodes:
        for v in node.outputs:
            out[id(v)] = f"%{k}"
            k += 1
    return out


def _label(graph: Graph, key: str, numbers: dict[int, str]) -> tuple[str, str, str]:
    """(first line, second line, tooltip) of a vertex."""
    kind, _, idx = key.partition(":")
    i = int(idx)
    if kind == "in":
        v = graph.user_inputs[i]
        return v.name, format_type(v.type), f"input {v.name}: {format_type(v.type)}"
    if kind == "out":
        return f"output {i}", "", f"graph output {i}"
    node = graph.nodes[i]
    types = ", ".join(format_type(v.type) for v in node.outputs)
    operands = ", ".join(numbers.get(id(x), "?") if isinstance(x, Value) else repr(x) for x in node.inputs)
    results = ", ".join(numbers[id(v)] for v in node.outputs)
    where = f"\n{node.loc[0]}:{node.loc[1]}" if node.loc else ""
    tip = f"{results} = {node.op.name}({operands}) : {types}\nscope: {node.scope or '(top level)'}{where}"
    return node.op.name, types if len(types) <= 26 else types[:24] + "..", tip


def graph_svg(graph: Graph, kernel_of_node: dict[int, tuple[int, str]]) -> str:
    """The graph as SVG. ``kernel_of_node``: node index -> (kernel index, kernel name)."""
    layer, preds, _ = _layers(graph)
    if not layer:
        return '<svg id="graph-svg" width="200" height="40"></svg>'
    pos = _positions(layer, preds)
    w = max(x for x, _ in pos.values()) + _BOX_W + _MARGIN
    h = max(y for _, y in pos.values()) + _BOX_H + _MARGIN
    parts = [f'<svg id="graph-svg" width="{w:.0f}" height="{h:.0f}" '
             f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="sans-serif" font-size="11">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker></defs>',
             '<g class="edges">']
    for k, ps in preds.items():
        x1, y1 = pos[k]
        for p in ps:
            x0, y0 = pos[p]
            sx, sy, ex, ey = x0 + _BOX_W / 2, y0 + _BOX_H, x1 + _BOX_W / 2, y1
            mid = (sy + ey) / 2
            parts.append(f'<path class="edge" d="M{sx:.1f},{sy:.1f} C{sx:.1f},{mid:.1f} {ex:.1f},{mid:.1f} '
                         f'{ex:.1f},{ey:.1f}" fill="none" stroke="#888" marker-end="url(#arrow)"/>')
    parts.append('</g><g class="nodes">')
    numbers = value_numbers(graph)
    for k, (x, y) in pos.items():
        parts.append(_vertex(graph, k, x, y, kernel_of_node, numbers))
    parts.append("</g></svg>")
    return "\n".join(parts)


def _vertex(graph: Graph, key: str, x: float, y: float, kernel_of_node: dict[int, tuple[int, str]],
            numbers: dict[int, str]) -> str:
    first, second, tip = _label(graph, key, numbers)
    kind, _, idx = key.partition(":")
    if kind == "n":
        k_index, k_name = kernel_of_node.get(int(idx), (None, ""))
        fill, shape = kernel_colour(k_index), 'rx="10"'
        attrs = f'id="node-{idx}" data-kernel="{escape(k_name)}" data-node="{idx}"'
        href = f"#row-{idx}"
        tip += f"\nkernel: {k_name or '(inlined into its readers)'}"
    else:
        fill, shape = ("#d8e8ff" if kind == "in" else "#d9f2d9"), 'rx="2"'
        attrs, href = f'id="{kind}-{idx}"', "#nodes"
    return (f'<g class="node {kind}" {attrs}><a href="{href}"><title>{escape(tip)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{_BOX_W}" height="{_BOX_H}" {shape} fill="{fill}" '
            f'stroke="#555"/><text x="{x + _BOX_W / 2:.1f}" y="{y + 18:.1f}" text-anchor="middle" '
            f'font-weight="bold">{escape(first)}</text><text x="{x + _BOX_W / 2:.1f}" y="{y + 34:.1f}" '
            f'text-anchor="middle" fill="#333">{escape(second)}</text></a></g>')


def memory_svg(memory: Any, call_names: list[str]) -> str:
    """Buffers over time (x: kernel call) against arena offset (y), with the arena size and lower bound."""
    lifetimes = memory.lifetimes
    calls = max(len(call_names), max((lt.end + 1 for lt in lifetimes.values()), default=1))
    plot_w = max(600.0, min(1200.0, 40.0 * calls))
    plot_h = 420.0
    left, top, bottom = 130.0, 20.0, 60.0
    top_bytes = max(memory.arena_bytes, memory.lower_bound, 1)
    col = plot_w / calls

    def y_of(b: float) -> float:
        return top + plot_h - plot_h * b / top_bytes

    parts = [f'<svg id="memory-svg" width="{left + plot_w + 170:.0f}" '
             f'height="{top + plot_h + bottom:.0f}" font-family="sans-serif" font-size="11">',
             f'<rect x="{left}" y="{top}" width="{plot_w:.1f}" height="{plot_h:.1f}" fill="#fafafa" '
             'stroke="#999"/>']
    for i, name in enumerate(call_names):
        cx = left + (i + 0.5) * col
        parts.append(f'<text x="{cx:.1f}" y="{top + plot_h + 14:.1f}" text-anchor="middle">{i}'
                     f'<title>{escape(name)}</title></text>')
    for name, lt in sorted(lifetimes.items(), key=lambda kv: (kv[1].start, kv[0])):
        off, size = memory.offsets[name], memory.sizes[name]
        x0, x1 = left + lt.start * col, left + (lt.end + 1) * col
        y0, y1 = y_of(off + size), y_of(off)
        tip = (f"{name}: {size} B at offset {off}, live in calls {lt.start}..{lt.end} "
               f"({', '.join(call_names[lt.start:lt.end + 1])})")
        parts.append(f'<rect class="buffer" x="{x0 + 1:.1f}" y="{y0:.1f}" width="{max(x1 - x0 - 2, 1):.1f}" '
                     f'height="{max(y1 - y0, 1):.1f}" fill="{kernel_colour(lt.start)}" stroke="#446" '
                     f'stroke-width="0.6"><title>{escape(tip)}</title></rect>')
    lines = ((memory.arena_bytes, "arena", "#222", left - 4, "end", 4),
             (memory.lower_bound, "lower bound", "#c00", left + plot_w + 4, "start", 12))
    for value, label, style, tx, anchor, dy in lines:  # labels on both sides: the two may coincide
        y = y_of(value)
        dash = ' stroke-dasharray="6,4"' if label == "lower bound" else ""
        parts.append(f'<line class="{label.replace(" ", "-")}" x1="{left}" x2="{left + plot_w:.1f}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="{style}" stroke-width="1.5"{dash}/>'
                     f'<text x="{tx:.1f}" y="{y + dy:.1f}" text-anchor="{anchor}" fill="{style}">{label} '
                     f'{value:,} B</text>')
    parts.append(f'<text x="{left - 4}" y="{top + plot_h:.1f}" text-anchor="end">0 B</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 36:.1f}" text-anchor="middle">'
                 "kernel call (time) &#8594;, vertical: arena offset (bytes)</text></svg>")
    return "\n".join(parts)
