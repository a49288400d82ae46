"""``ember demo --quick``: the console entry point trains LeNet-5 on generated digits, draws the progress
bar and reports held-out accuracy well above chance."""

from __future__ import annotations

import io
import re

from ember.cli import main
from ember.demo import ProgressBar


def test_demo_quick_trains_and_reports(capsys) -> None:
    assert main(["demo", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "generated training digits" in out
    assert re.search(r"epoch 1/1 \[#+\] \d+/\d+  loss \d\.\d{4}  acc +\d+\.\d%", out)
    report = r"test accuracy (\d+\.\d+)% on 500 held-out digits; training [\d.]+s, total [\d.]+s"
    match = re.search(report, out)
    assert match, out
    assert float(match.group(1)) > 30.0  # one short epoch already far above chance (10%)
    compiled = re.search(r"compiled: (\d+) graph nodes -> (\d+) native kernels in [\d.]+s; "
                         r"max \|compiled - eager\| = ([\d.e+-]+)", out)
    assert compiled, out
    assert int(compiled.group(2)) < int(compiled.group(1))  # fusion made fewer kernels than nodes
    assert float(compiled.group(3)) < 1e-4
    assert re.search(r"batch 1: eager [\d.]+ ms, compiled [\d.]+ ms \([\d.]+x\)", out)


def test_progress_bar_prints_quarters_when_not_a_terminal() -> None:
    buf = io.StringIO()
    bar = ProgressBar(8, "epoch 1/2", buf, width=8)
    for i in range(1, 9):
        bar.update(i, 1.0 / i, i / 8)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in buf.getvalue()
    assert lines[-1].startswith("epoch 1/2 [########] 8/8  loss 0.1250  acc 100.0%")
    assert lines[0].startswith("epoch 1/2 [##......] 2/8")
