"""HTML of the compile report: one page, inline CSS, SVG and JS, nothing fetched from anywhere.

Each section is one function returning HTML text; every piece of text from the model or the compiler
goes through ``html.escape``. The page's script colours nothing and computes nothing that matters: it
adds highlighting (hover a node or a kernel to see the kernel's nodes) and, once the graph and the memory
plot have a rendered size, marks the page ``data-rendered="ok"`` and says so in the title, which the
headless-browser test reads.
"""

from __future__ import annotations

import linecache
import os
from html import escape
from typing import Any

from ember.compiler.bisect import formed_by, kernel_groups
from ember.compiler.report.svg import graph_svg, kernel_colour, memory_svg, value_numbers

__all__ = ["render_page"]

_LLVM_LIMIT = 200_000   # characters of LLVM IR shown per kernel (GEMM micro-kernels are long)
_DIFF_LIMIT = 400       # diff lines shown per pass

_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 24px 40px; color: #222; }
h1 { font-size: 22px; } h2 { border-bottom: 1px solid #ccc; padding-top: 12px; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: 8px; overflow-x: auto; font-size: 12px; }
.scroll { overflow: auto; max-height: 900px; border: 1px solid #ddd; }
.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #777; margin-right: 4px; }
.bar { background: #6a9fd8; height: 10px; display: inline-block; }
.add { color: #116611; } .del { color: #aa1111; } .hunk { color: #555; }
.bad { background: #ffe0e0; } .ok { color: #116611; } .fail { color: #aa1111; font-weight: bold; }
g.node.hl rect { stroke: #000; stroke-width: 3; }
g.node.dim { opacity: 0.35; }
tr.target { background: #fff7c0; }
"""

_JS = """
(function () {
  function nodesOf(kernel) { return document.querySelectorAll('g.node[data-kernel="' + kernel + '"]'); }
  function highlight(kernel) {
    document.querySelectorAll('g.node.n').forEach(function (n) {
      var mine = kernel && n.getAttribute('data-kernel') === kernel;
      n.classList.toggle('hl', !!mine);
      n.classList.toggle('dim', !!kernel && !mine);
    });
  }
  document.querySelectorAll('g.node.n').forEach(function (n) {
    n.addEventListener('mouseenter', function () { highlight(n.getAttribute('data-kernel')); });
    n.addEventListener('mouseleave', function () { highlight(null); });
  });
  document.querySelectorAll('[data-kernel-row]').forEach(function (row) {
    var k = row.getAttribute('data-kernel-row');
    row.addEventListener('mouseenter', function () { highlight(k); });
    row.addEventListener('mouseleave', function () { highlight(null); });
    row.setAttribute('title', nodesOf(k).length + ' graph nodes');
  });
  var graph = document.getElementById('graph-svg');
  var memory = document.getElementById('memory-svg');
  function drawn(svg) { return !!svg && svg.getBoundingClientRect().width > 0; }
  var ok = drawn(graph) && graph.querySelectorAll('g.node').length > 0 && drawn(memory);
  document.body.setAttribute('data-rendered', ok ? 'ok' : 'failed');
  document.body.setAttribute('data-graph-nodes', graph ? graph.querySelectorAll('g.node').length : 0);
  var buffers = memory ? memory.querySelectorAll('rect.buffer').length : 0;
  document.body.setAttribute('data-memory-buffers', buffers);
  document.title = document.title + (ok ? ' [rendered]' : ' [render failed]');
})();
"""


def _table(headers: list[str], rows: list[str], attrs: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table {attrs}><tr>{head}</tr>{''.join(rows)}</table>"


def _kernel_of_node(data: Any) -> tuple[dict[int, tuple[int, str]], list[tuple[str, Any]]]:
    """Graph node index -> (kernel index, kernel name), through the value names fusion gave."""
    result = data.result
    kernels = kernel_groups(result)
    by_value = {}
    for k, (name, group) in enumerate(kernels):
        for node in group.nodes:
            for out in node.outputs:
                by_value.setdefault(out, (k, name))
    names = result.plan.names if result.plan is not None else {}
    out = {}
    for i, node in enumerate(result.graph.nodes):
        hit = by_value.get(names.get(id(node.outputs[0]), ""))
        if hit is not None:
            out[i] = hit
    return out, kernels


def _summary(data: Any, kernels: list[tuple[str, Any]]) -> str:
    r = data.result
    mem = r.memory
    items = [f"{len(r.graph.nodes)} graph nodes after the passes", f"{len(kernels)} kernels",
             f"compiled in {r.seconds:.2f} s"]
    if mem is not None:
        items.append(f"arena {mem.arena_bytes:,} B (naive {mem.naive_bytes:,} B, "
                     f"lower bound {mem.lower_bound:,} B)")
    if data.program_seconds is not None:
        items.append(f"one call of the compiled program: {data.program_seconds * 1e6:,.1f} \u00b5s")
    lis = "".join(f"<li>{escape(x)}</li>" for x in items)
    if data.numerics is not None:
        cls = "ok" if data.numerics.ok else "fail"
        lis += f'<li class="{cls}">numerics: {escape(data.numerics.summary())}</li>'
    nav = " ".join(f'<a href="#{s}">{s}</a>' for s in ("graph", "nodes", "passes", "fusion", "kernels",
                                                        "memory", "timings", "numerics"))
    return f"<h1>{escape(data.title)}</h1><nav>{nav}</nav><ul>{lis}</ul>"


def _graph_section(data: Any, kernel_of: dict[int, tuple[int, str]], kernels: list[tuple[str, Any]]) -> str:
    legend = "".join(f'<span data-kernel-row="{escape(n)}" style="margin-right:12px">'
                     f'<span class="swatch" style="background:{kernel_colour(k)}"></span>{escape(n)}</span>'
                     for k, (n, _) in enumerate(kernels))
    return (f'<h2 id="graph">Graph</h2><p>The optimized graph; each node is filled with the colour of the '
            f'kernel it runs in (parameters are listed in the tooltips). Click a node for its module scope '
            f'and source line.</p><p>{legend}</p>'
            f'<div class="scroll">{graph_svg(data.result.graph, kernel_of)}</div>')


def _nodes_section(data: Any, kernel_of: dict[int, tuple[int, str]]) -> str:
    rows = []
    numbers = value_numbers(data.result.graph)
    for i, node in enumerate(data.result.graph.nodes):
        label = ", ".join(numbers[id(v)] for v in node.outputs)
        k_name = kernel_of.get(i, (None, "(inlined into its readers)"))[1]
        where, text = "", ""
        if node.loc:
            where = f"{os.path.basename(node.loc[0])}:{node.loc[1]}"
            text = linecache.getline(node.loc[0], node.loc[1]).strip()
        types = ", ".join(f"{list(v.shape)} {v.dtype.name}" for v in node.outputs)
        rows.append(f'<tr id="row-{i}"><td><a href="#node-{i}">{escape(label)}</a></td>'
                    f'<td>{escape(node.op.name)}</td>'
                    f'<td>{escape(types)}</td><td>{escape(k_name)}</td>'
                    f'<td>{escape(node.scope or "(top)")}</td>'
                    f'<td title="{escape(node.loc[0] if node.loc else "")}">{escape(where)}</td>'
                    f'<td><code>{escape(text)}</code></td></tr>')
    return ('<h2 id="nodes">Nodes, module scopes and source lines</h2>'
            + _table(["value", "op", "result", "kernel", "module scope", "source", "line"], rows))


def _diff_html(lines: list[str]) -> str:
    out = []
    for line in lines[:_DIFF_LIMIT]:
        cls = ("add" if line.startswith("+") and not line.startswith("+++") else
               "del" if line.startswith("-") and not line.startswith("---") else
               "hunk" if line.startswith("@@") else "")
        out.append(f'<span class="{cls}">{escape(line)}</span>' if cls else escape(line))
    if len(lines) > _DIFF_LIMIT:
        out.append(f"... {len(lines) - _DIFF_LIMIT} more lines")
    return "<pre>" + "\n".join(out) + "</pre>"


def _passes_section(data: Any) -> str:
    report = data.result.pass_report
    rows = []
    for rec in (report.records if report is not None else []):
        stats = ", ".join(f"{k}={v}" for k, v in sorted(rec.stats.items()))
        rows.append(f"<tr><td>{escape(rec.name)}</td><td>{'yes' if rec.changed else 'no'}</td>"
                    f'<td class="num">{rec.nodes_before}</td><td class="num">{rec.nodes_after}</td>'
                    f'<td class="num">{rec.seconds * 1e3:.2f}</td><td>{escape(stats)}</td></tr>')
    html = ['<h2 id="passes">Passes</h2>',
            _table(["pass", "changed", "nodes before", "nodes after", "ms", "statistics"], rows)]
    if data.diffs is None:
        html.append("<p>No IR diffs: the report was made without the graph as traced.</p>")
    else:
        for name, diff in data.diffs:
            body = _diff_html(diff) if diff else "<p>no change to the IR</p>"
            html.append(f"<details><summary>IR diff of {escape(name)} ({len(diff)} lines)</summary>{body}"
                        "</details>")
    return "".join(html)


def _fusion_section(data: Any, kernels: list[tuple[str, Any]]) -> str:
    r = data.result
    rows = [f'<tr data-kernel-row="{escape(n)}"><td class="num">{k}</td><td>'
            f'<span class="swatch" style="background:{kernel_colour(k)}"></span>{escape(n)}</td>'
            f"<td>{escape(', '.join(x.op for x in g.nodes))}</td><td>{escape(', '.join(g.inputs))}</td>"
            f"<td>{escape(', '.join(g.outputs))}</td><td>{escape(formed_by(g, r))}</td></tr>"
            for k, (n, g) in enumerate(kernels)]
    plan = r.plan
    fused = "".join(f"<li>{escape(x)}</li>" for x in (plan.fused if plan else []))
    refused = "".join(f"<li>{escape(x)}</li>" for x in (plan.refusals if plan else []))
    split = [x for x in r.notes if plan is None or x not in plan.refusals]
    notes = "".join(f"<li>{escape(x)}</li>" for x in split)
    n_ref = len(plan.refusals) if plan else 0
    return ('<h2 id="fusion">Fusion</h2>'
            + _table(["#", "kernel", "ops", "inputs", "outputs", "formed by"], rows)
            + f"<h3>Fusion decisions ({len(plan.fused) if plan else 0})</h3>"
            + f"<ul>{fused or '<li>none</li>'}</ul>"
            + f'<h3 id="refusals">Refusals, each with its reason ({n_ref})</h3>'
            + f'<ul>{refused or "<li>none</li>"}</ul>'
            + (f"<h3>Compile notes</h3><ul>{notes}</ul>" if notes else ""))


def _kernels_section(data: Any, kernels: list[tuple[str, Any]]) -> str:
    sources = data.result.executable.sources
    isolated = {k.name: k for k in data.kernels}
    html = ['<h2 id="kernels">Kernels</h2><p>Kernel IR as lowered, and the LLVM IR generated for each kernel '
            "(the kernel compiled as its own program: in the model's module every kernel is inlined into one "
            f"entry function, {len(sources.get('llvm', '')):,} characters of LLVM IR in all).</p>"]
    for n, _ in kernels:
        body = f"<h4>kernel IR</h4><pre>{escape(sources.get(n, '(no kernel IR recorded)'))}</pre>"
        if n in isolated:
            llvm = isolated[n].runner.exe.sources.get("llvm", "")
            cut = f"\n... {len(llvm) - _LLVM_LIMIT:,} more characters" if len(llvm) > _LLVM_LIMIT else ""
            body += f"<h4>LLVM IR</h4><pre class=\"llvm\">{escape(llvm[:_LLVM_LIMIT] + cut)}</pre>"
        html.append(f'<details class="kernel" id="kernel-{escape(n)}"><summary>{escape(n)}</summary>{body}'
                    "</details>")
    return "".join(html)


def _memory_section(data: Any, kernels: list[tuple[str, Any]]) -> str:
    mem = data.result.memory
    if mem is None:
        return '<h2 id="memory">Memory plan</h2><p>No memory plan was recorded for this compilation.</p>'
    pairs = ", ".join(f"{o} takes {i}" for o, i in mem.inplace) or "none"
    return ('<h2 id="memory">Memory plan</h2><p>Every intermediate buffer as a rectangle: the kernel '
            "calls it is live in (horizontal) against its bytes in the arena (vertical). The solid line is "
            "the arena size, the dashed red line the lower bound (the most bytes live at one call). A "
            "buffer has the colour of the kernel that writes it first (hover for its name).</p>"
            f"<p>{escape(mem.summary())}. In place: {escape(pairs)}.</p>"
            f'<div class="scroll">{memory_svg(mem, [n for n, _ in kernels])}</div>')


def _timings_section(data: Any, kernels: list[tuple[str, Any]]) -> str:
    head = '<h2 id="timings">Per-kernel timings</h2>'
    if not data.timings:
        return head + "<p>No timings: the report was made without example inputs.</p>"
    total = sum(data.timings.values()) or 1.0
    rows = []
    for n, _ in kernels:
        s = data.timings.get(n)
        if s is None:
            continue
        rows.append(f'<tr data-kernel-row="{escape(n)}"><td>{escape(n)}</td>'
                    f'<td class="num">{s * 1e6:,.1f}</td>'
                    f'<td class="num">{100 * s / total:.1f}%</td><td><span class="bar" '
                    f'style="width:{max(1, round(300 * s / total))}px"></span></td></tr>')
    whole = (f"; one call of the whole program (all kernels in one native call) takes "
             f"{data.program_seconds * 1e6:,.1f} &#181;s" if data.program_seconds is not None else "")
    return (head + "<p><b>Isolated kernel timing</b>: the runtime calls every kernel from one native entry "
            "function and has no per-kernel timing hook, so each kernel was compiled as its own program and "
            f"run alone on the intermediate values recorded from the reference run (median of {data.repeats} "
            f"runs after a warm-up){whole}. Sum of the isolated times: {total * 1e6:,.1f} &#181;s.</p>"
            + _table(["kernel", "µs", "share", ""], rows))


def _numerics_section(data: Any) -> str:
    head = '<h2 id="numerics">Numerics: every kernel against the float64 interpreter</h2>'
    rep = data.numerics
    if rep is None:
        return head + "<p>Not checked (no example inputs, or check disabled).</p>"
    rows = [f'<tr class="{"" if c.ok else "bad"}" data-kernel-row="{escape(c.name)}">'
            f'<td class="num">{c.index}</td><td>{escape(c.name)}</td><td class="num">{c.error:.3g}</td>'
            f'<td class="num">{c.max_abs:.3g}</td><td>{escape(c.worst_output)}</td>'
            f"<td>{'ok' if c.ok else 'EXCEEDS'}</td><td>{escape(c.formed_by)}</td></tr>" for c in rep.checks]
    cls = "ok" if rep.ok else "fail"
    return (head + f'<p class="{cls}">{escape(rep.summary())}</p><p>Error: the largest |got - ref| / (atol + '
            "rtol |ref|) over a kernel's outputs (at most 1 passes); each kernel runs on float64 reference "
            "inputs, so an error does not spread to later kernels.</p>"
            + _table(["#", "kernel", "error", "max abs", "output", "", "formed by"], rows))


def render_page(data: Any) -> str:
    """The whole page for a ``ReportData``."""
    kernel_of, kernels = _kernel_of_node(data)
    body = [_summary(data, kernels), _graph_section(data, kernel_of, kernels),
            _nodes_section(data, kernel_of), _passes_section(data), _fusion_section(data, kernels),
            _kernels_section(data, kernels),
            _memory_section(data, kernels), _timings_section(data, kernels), _numerics_section(data)]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(data.title)}</title><style>{_CSS}</style></head>"
            '<body data-rendered="pending">\n' + "\n".join(body)
            + f"\n<script>{_JS}</script>\n</body></html>\n")
