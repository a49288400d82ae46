"""``ember inspect <file.py:factory | zoo name> --input ... --format text|dot|svg|table``."""

from __future__ import annotations

import pytest
from ember.cli import main
from ember.compiler.ir import parse, verify

MODEL = '''
import ember
nn = ember.nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(self.conv(x).relu().flatten(1))


def make():
    return Small()


def two_inputs():
    return lambda a, b: a @ b
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return str(path)


def test_text_format_prints_parseable_ir(model_file, capsys):
    assert main(["inspect", f"{model_file}:make", "--input", "1x3x8x8"]) == 0
    g = verify(parse(capsys.readouterr().out))
    assert g.name == "Small"
    assert [v.name for v in g.inputs][:3] == ["x", "conv.weight", "conv.bias"]
    assert g.nodes[0].op.name == "conv" and g.nodes[0].scope == "conv"


def test_table_and_dot_formats(model_file, capsys, tmp_path):
    assert main(["inspect", f"{model_file}:make", "--input", "2x3x8x8", "--format", "table"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["#", "op", "scope", "output", "params", "FLOPs"]
    conv_params = 4 * 3 * 3 * 3
    assert f"{conv_params}" in table
    assert "total:" in table.splitlines()[-1] and "1.40K parameters" in table.splitlines()[-1]
    out = tmp_path / "g.dot"
    args = ["inspect", f"{model_file}:make", "--input", "1x3x8x8", "--format", "dot", "-o", str(out)]
    assert main(args) == 0
    assert out.read_text().startswith('digraph "Small" {')


def test_several_inputs(model_file, capsys):
    assert main(["inspect", f"{model_file}:two_inputs", "--input", "2x3", "--input", "3x4"]) == 0
    g = parse(capsys.readouterr().out)
    assert [v.type.shape for v in g.inputs] == [(2, 3), (3, 4)]
    assert [n.op.name for n in g.nodes] == ["matmul"]


def test_svg_without_graphviz_exits_with_the_hint(model_file, capsys, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert main(["inspect", f"{model_file}:make", "--input", "1x3x8x8", "--format", "svg"]) == 2
    assert "apt-get install graphviz" in capsys.readouterr().err


def test_bad_arguments(model_file, capsys):
    with pytest.raises(SystemExit, match="has no callable 'nope'"):
        main(["inspect", f"{model_file}:nope", "--input", "1x3x8x8"])
    with pytest.raises(SystemExit, match="no such file"):
        main(["inspect", "/does/not/exist.py:make"])
    with pytest.raises(SystemExit, match="no_such_model"):
        main(["inspect", "no_such_model", "--input", "1x3x8x8"])
    with pytest.raises(SystemExit):
        main(["inspect", f"{model_file}:make", "--input", "1xthree"])
    assert "input size must look like 1x3x32x32" in capsys.readouterr().err


def test_zoo_model_by_name(capsys):
    assert main(["inspect", "lenet5", "--input", "1x1x28x28", "--format", "table"]) == 0
    table = capsys.readouterr().out
    assert "conv" in table and "total: " in table
    assert main(["inspect", "lenet5", "--input", "1x1x28x28"]) == 0
    g = verify(parse(capsys.readouterr().out))
    assert g.name == "LeNet5" and g.inputs[0].type.shape == (1, 1, 28, 28)
