"""The compile report (``CompiledModule.report``, ``ember inspect --html``): one self-contained HTML page.

The LeNet-5 report is checked twice: its structure as text (sections, SVG elements, one row per kernel,
no URL fetched from anywhere), and rendered in a real headless browser (Debian's chromium), which must
draw the graph and the memory plot, run the page's script (it marks ``data-rendered="ok"`` once both
pictures have a size) and log nothing to the console; a screenshot is saved.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import ember
import pytest
from ember.cli import main
from ember.compiler.bisect import kernel_groups
from ember.compiler.report import build_report, pass_diffs
from ember.vision.models import lenet5
from filelock import FileLock


class _Tags(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, **want: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(want[k] in a.get(k, "").split() for k in want)]


def _facts(result) -> dict:
    """What the tests compare the page with, as plain data (shared between xdist workers as JSON)."""
    return {"kernels": [name for name, _ in kernel_groups(result)],
            "scopes": [node.scope for node in result.graph.nodes],
            "inputs": len(result.graph.user_inputs),
            "passes": [rec.name for rec in result.pass_report.records],
            "refusals": list(result.plan.refusals),
            "buffers": len(result.memory.lifetimes),
            "arena": result.memory.arena_bytes, "lower_bound": result.memory.lower_bound}


def _make_lenet_report(folder) -> tuple[str, dict]:
    ember.manual_seed(0)
    model = lenet5().eval()
    x = ember.randn(2, 1, 28, 28)
    compiled = ember.compile(model)
    path = str(folder / "lenet5.html")
    with ember.no_grad():
        assert compiled.report(path, x) == path
    return path, _facts(compiled.compiled_for(x).result)


@pytest.fixture(scope="module")
def lenet_report(request, tmp_path_factory):
    """(path, text, parsed tags, facts) of the LeNet-5 report, made once per run: under xdist the workers
    share it through the run's temporary folder (compiling LeNet-5 twice would double this file's time)."""
    if hasattr(request.config, "workerinput"):
        folder = tmp_path_factory.getbasetemp().parent  # this run's folder, shared by its workers
        facts_file = folder / "lenet5_report.json"
        with FileLock(str(folder / "lenet5_report.lock")):
            if not facts_file.exists():
                path, facts = _make_lenet_report(folder)
                facts_file.write_text(json.dumps({"path": path, "facts": facts}))
        saved = json.loads(facts_file.read_text())
        path, facts = saved["path"], saved["facts"]
    else:
        path, facts = _make_lenet_report(tmp_path_factory.mktemp("report"))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    tags = _Tags()
    tags.feed(text)
    return path, text, tags, facts


def test_sections_and_summary(lenet_report):
    _, text, tags, facts = lenet_report
    ids = {a.get("id") for _, a in tags.tags}
    for section in ("graph", "nodes", "passes", "fusion", "refusals", "kernels", "memory", "timings",
                    "numerics"):
        assert section in ids, section
    assert "<title>ember compile report: LeNet5</title>" in text
    assert f"{len(facts['kernels'])} kernels" in text
    assert f"all {len(facts['kernels'])} kernels match the float64 interpreter" in text


def test_self_contained(lenet_report):
    _, text, tags, _ = lenet_report
    assert not re.search(r"https?://", text)
    assert not tags.find("link") and not tags.find("img") and not tags.find("iframe")
    assert all("src" not in a for _, a in tags.tags)
    assert not re.search(r"url\((?!#)", text) and "@import" not in text
    assert len(tags.find("script")) == 1 and len(tags.find("style")) == 1


def test_graph_svg_colours_kernels_and_links_nodes(lenet_report):
    _, text, tags, facts = lenet_report
    assert len(tags.find("svg", id="graph-svg")) == 1
    nodes = tags.find("g", **{"class": "n"})
    assert len(nodes) == len(facts["scopes"])
    assert len(tags.find("g", **{"class": "in"})) == facts["inputs"]
    assert len(tags.find("g", **{"class": "out"})) == 1
    kernel_names = set(facts["kernels"])
    assert {a["data-kernel"] for a in nodes} == kernel_names  # every kernel drawn, every node in one
    assert len(tags.find("path", **{"class": "edge"})) >= len(nodes)
    # the nodes of one kernel share a fill; different kernels differ
    fills: dict[str, set[str]] = {}
    rects = [a for t, a in tags.tags if t == "rect" and a.get("rx") == "10"]
    for node, rect in zip(nodes, rects):
        fills.setdefault(node["data-kernel"], set()).add(rect["fill"])
    assert all(len(f) == 1 for f in fills.values())
    assert len({next(iter(f)) for f in fills.values()}) == len(kernel_names)
    # each node links to its table row, which names the module scope and the source line
    for i, scope in enumerate(facts["scopes"]):
        assert f'href="#row-{i}"' in text
        row = re.search(rf'<tr id="row-{i}">(.*?)</tr>', text).group(1)
        assert f"<td>{scope or '(top)'}</td>" in row and "lenet.py:" in row
    assert "features.0" in facts["scopes"] and "classifier.4" in facts["scopes"]


def test_passes_fusion_and_kernels(lenet_report):
    _, text, tags, facts = lenet_report
    for name in facts["passes"]:
        assert f"<td>{name}</td>" in text and f"IR diff of {name}" in text
    for refusal in facts["refusals"]:
        assert refusal.replace("'", "&#x27;") in text
    assert "relu fused into conv" in text
    kernels = tags.find("details", **{"class": "kernel"})
    assert [a["id"] for a in kernels] == [f"kernel-{n}" for n in facts["kernels"]]
    assert text.count("<h4>kernel IR</h4>") == len(kernels) == text.count("<h4>LLVM IR</h4>")
    assert text.count("define ") >= len(kernels)
    assert "gemm[" in text  # the conv kernels' lowered GEMM


def test_memory_plot_draws_buffers_arena_and_bound(lenet_report):
    _, _, tags, facts = lenet_report
    assert len(tags.find("svg", id="memory-svg")) == 1
    assert len(tags.find("rect", **{"class": "buffer"})) == facts["buffers"]
    (arena,) = tags.find("line", **{"class": "arena"})
    (bound,) = tags.find("line", **{"class": "lower-bound"})
    assert float(bound["y1"]) >= float(arena["y1"])  # the bound is at most the arena: drawn at or below it
    assert facts["lower_bound"] <= facts["arena"]


def test_timings_are_isolated_and_labelled(lenet_report):
    _, text, _, facts = lenet_report
    assert "Isolated kernel timing" in text and "no per-kernel timing hook" in text
    for name in facts["kernels"]:
        assert re.search(rf'<tr data-kernel-row="{name}"><td>{name}</td><td class="num">[\d,.]+</td>', text)


def test_report_without_inputs_has_no_timings():
    compiled = ember.compile(lambda x: (x * 2).relu().sum(1))
    text = build_report(compiled.compiled_for(ember.randn(3, 4)).result)
    assert "No timings: the report was made without example inputs." in text
    assert "Not checked" in text and 'id="graph-svg"' in text and 'id="memory-svg"' in text


# ---- a real browser ----------------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, check=False,
                       capture_output=True, timeout=600)
        return shutil.which("chromium")
    return None


def _run_chromium(exe: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120, check=False)


def _console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_renders_in_headless_chromium(lenet_report, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed and cannot be installed here (no apt-get or not root)")
    path, _, _, facts = lenet_report
    url = "file://" + os.path.abspath(path)
    dom = _run_chromium(exe, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_messages(dom.stderr) == []
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    assert 'data-rendered="ok"' in body  # the page's script ran and both pictures have a size
    assert f'data-graph-nodes="{len(facts["scopes"]) + facts["inputs"] + 1}"' in body
    assert f'data-memory-buffers="{facts["buffers"]}"' in body
    assert "<title>ember compile report: LeNet5 [rendered]</title>" in dom.stdout

    shot = tmp_path / "report.png"
    run = _run_chromium(exe, tmp_path, f"--screenshot={shot}", "--window-size=1400,2000", url)
    assert run.returncode == 0, run.stderr[-2000:]
    assert _console_messages(run.stderr) == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1400, 2000)
    assert len(data) > 20_000  # a drawn page, not a blank one
    print(f"screenshot saved to {shot}")


# ---- the command line ----------------------------------------------------------------------------------

MODEL = '''
import ember.nn.functional as F


def pooled(x):
    return F.max_pool2d((x * 2 + 1).relu(), 2).tanh() * 3


def make():
    return pooled
'''


def test_inspect_html_and_bisect(tmp_path, capsys):
    source = tmp_path / "model.py"
    source.write_text(MODEL)
    out = tmp_path / "report.html"
    assert main(["inspect", f"{source}:make", "--input", "2x3x8x8", "--html", str(out)]) == 0
    assert f"wrote the compile report to {out}" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert 'id="graph-svg"' in text and 'id="memory-svg"' in text and "all 3 kernels match" in text
    assert main(["inspect", f"{source}:make", "--input", "2x3x8x8", "--bisect"]) == 0
    printed = capsys.readouterr().out
    assert "fused_1_max_pool" in printed and "all 3 kernels match the float64 interpreter" in printed


def test_pass_diffs_show_what_a_pass_changed():
    model = ember.nn.Sequential(ember.nn.Conv2d(3, 4, 3), ember.nn.BatchNorm2d(4), ember.nn.ReLU()).eval()
    fn = lambda x: (model(x) * 1.0).relu()  # noqa: E731  (canonicalize drops the multiply by one)
    graph = ember.trace(fn, ember.randn(1, 3, 6, 6))
    diffs = dict(pass_diffs(graph))
    removed = [line for line in diffs["canonicalize"] if line.startswith("-") and " mul(" in line]
    assert len(removed) == 1  # the identity multiply leaves the IR
    assert diffs["canonicalize"][:2] == ["--- before", "+++ after"]
    passes = ember.compile(fn, target="interpret").compiled_for(ember.randn(1, 3, 6, 6)).result.pass_report
    assert list(diffs) == [rec.name for rec in passes.records]  # one diff per pass of the pipeline, in order
