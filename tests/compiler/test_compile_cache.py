"""The on-disk compile cache (compiler/cache.py): hits across processes, misses on anything that changes
the code, survives damaged entries, writes nothing when off, and cached code computes what eager does.

tests/conftest.py gives every test its own empty EMBER_CACHE_DIR; ``cache_dir`` below reads it back.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import subprocess
import sys

import ember
import ember.nn as nn
import numpy as np
import pytest
import torch
from ember.compiler import cache
from ember.compiler.compile import CachedCompileResult

_CHILD = r"""
import json, sys
import numpy as np
import ember, ember.nn as nn
from ember.compiler import cache
ember.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
x = ember.randn(4, 6)
with ember.no_grad():
    y = ember.compile(model)(x)
    np.save(sys.argv[1], y.numpy())
    np.save(sys.argv[2], model(x).numpy())
print(json.dumps(cache.STATS))
"""


@pytest.fixture
def cache_dir() -> str:
    return os.environ["EMBER_CACHE_DIR"]


def _entries(folder: str) -> list[str]:
    sub = os.path.join(folder, f"v{cache.FORMAT}")
    return sorted(os.path.join(sub, f) for f in os.listdir(sub) if f.endswith(".bin")) if os.path.isdir(sub) else []


def _mlp(seed: int = 0) -> nn.Module:
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2)).eval()


def _twin(model: nn.Module) -> torch.nn.Module:
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)).eval()
    twin.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()})
    return twin


def _ew(x: ember.Tensor) -> ember.Tensor:
    """A weightless function that compiles in a fraction of a second (no GEMM template)."""
    return (x * 2 + 1).tanh() - x


def _ew_torch(x: ember.Tensor) -> np.ndarray:
    t = torch.from_numpy(x.numpy())
    return ((t * 2 + 1).tanh() - t).numpy()


def _compiled(model: nn.Module, x: ember.Tensor) -> np.ndarray:
    with ember.no_grad():
        return ember.compile(model)(x).numpy()


def _delta(before: dict[str, int]) -> dict[str, int]:
    return {k: cache.STATS[k] - before[k] for k in cache.STATS}


@pytest.mark.slow
def test_second_process_hits_the_cache_and_matches_eager(tmp_path, cache_dir):
    runs = []
    for i in range(2):
        out, ref = tmp_path / f"out{i}.npy", tmp_path / f"ref{i}.npy"
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(out), str(ref)], capture_output=True, text=True,
                              env=dict(os.environ), timeout=240)
        assert proc.returncode == 0, proc.stderr
        runs.append((json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out), np.load(ref)))
    (first, y0, r0), (second, y1, r1) = runs
    assert (first["misses"], first["writes"], first["hits"]) == (1, 1, 0)
    assert (second["hits"], second["misses"], second["writes"], second["rejected"]) == (1, 0, 0, 0)
    assert len(_entries(cache_dir)) == 1
    np.testing.assert_array_equal(y1, y0)  # the very same machine code
    np.testing.assert_allclose(y1, r1, rtol=1e-5, atol=1e-6)


def test_hit_in_process_equals_torch_and_uses_live_weights(cache_dir):
    model, x = _mlp(), ember.randn(3, 5)
    before = dict(cache.STATS)
    first = _compiled(model, x)
    second = _compiled(model, x)  # a new CompiledModule: its compile_graph finds the entry
    assert _delta(before)["hits"] == 1 and _delta(before)["writes"] == 1
    want = _twin(model)(torch.from_numpy(x.numpy())).detach().numpy()
    np.testing.assert_allclose(first, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(second, first)
    with ember.no_grad():  # weights are not part of the key: new weights, same entry, new numbers
        model[0].weight.mul_(2.0)
    before = dict(cache.STATS)
    third = _compiled(model, x)
    assert _delta(before)["hits"] == 1
    np.testing.assert_allclose(third, _twin(model)(torch.from_numpy(x.numpy())).detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(third, first)


def test_changed_shape_or_dtype_misses(cache_dir):
    _compiled(_ew, ember.randn(3, 5))
    for x in (ember.randn(4, 5), ember.randn(3, 5, dtype=ember.float64)):
        before = dict(cache.STATS)
        got = _compiled(_ew, x)
        assert _delta(before)["misses"] == 1 and _delta(before)["hits"] == 0
        np.testing.assert_allclose(got, _ew_torch(x), rtol=1e-6, atol=1e-7)
    assert len(_entries(cache_dir)) == 3


def test_changed_compiler_source_misses(cache_dir, monkeypatch):
    x = ember.randn(3, 5)
    _compiled(_ew, x)
    monkeypatch.setattr(cache, "compiler_digest", lambda: "an edited compiler")
    before = dict(cache.STATS)
    _compiled(_ew, x)
    assert _delta(before)["misses"] == 1 and _delta(before)["hits"] == 0


def _corrupt_last_byte(path: str) -> None:
    data = bytearray(pathlib.Path(path).read_bytes())
    data[-1] ^= 0xFF
    pathlib.Path(path).write_bytes(bytes(data))


def _truncate(path: str) -> None:
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[: len(data) // 2])


def _foreign_key(path: str) -> None:
    """A well-formed entry with a valid checksum, but written for another key (a renamed file)."""
    blob = pathlib.Path(path).read_bytes()
    entry = cache._parse(blob, os.path.basename(path)[:-4])
    meta = dict(entry.meta)
    meta.pop("key")
    meta.pop("format")
    key = os.path.basename(path)[:-4]
    cache.store("0" * 64, meta, entry.object_code, entry.sources)
    os.replace(cache.entry_path("0" * 64), cache.entry_path(key))


def _garbage(path: str) -> None:
    pathlib.Path(path).write_bytes(b"not a cache entry at all")


@pytest.mark.parametrize("damage", [_corrupt_last_byte, _truncate, _foreign_key, _garbage])
def test_damaged_entry_is_ignored_and_rewritten(cache_dir, caplog, damage):
    x = ember.randn(3, 5)
    want = _compiled(_ew, x)
    (path,) = _entries(cache_dir)
    damage(path)
    before = dict(cache.STATS)
    with caplog.at_level(logging.WARNING, logger="ember.cache"):
        got = _compiled(_ew, x)
    assert _delta(before)["rejected"] == 1 and _delta(before)["hits"] == 0 and _delta(before)["writes"] == 1
    assert "ignoring" in caplog.text and path in caplog.text
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, _ew_torch(x), rtol=1e-6, atol=1e-7)
    before = dict(cache.STATS)
    _compiled(_ew, x)  # the rewritten entry is whole again
    assert _delta(before)["hits"] == 1


def test_cache_off_writes_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for off in ("off", "0"):
        monkeypatch.setenv("EMBER_CACHE_DIR", off)
        before = dict(cache.STATS)
        x = ember.randn(2, 5)
        np.testing.assert_allclose(_compiled(_ew, x), _ew_torch(x), rtol=1e-6, atol=1e-7)
        assert _delta(before) == dict.fromkeys(cache.STATS, 0)
    assert not os.path.exists(tmp_path / "xdg") and not os.path.exists(home)
    assert not os.path.exists(os.path.join(os.getcwd(), "off"))


def test_default_folder_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("EMBER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _compiled(_ew, ember.randn(2, 5))
    assert len(_entries(str(tmp_path / "xdg" / "ember"))) == 1
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    from ember.runtime import settings

    assert settings.cache_dir() == str(tmp_path / "home" / ".cache" / "ember")


def test_unwritable_folder_still_compiles(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EMBER_CACHE_DIR", str(blocker))
    before = dict(cache.STATS)
    x = ember.randn(2, 5)
    with caplog.at_level(logging.WARNING, logger="ember.cache"):
        got = _compiled(_ew, x)
    assert _delta(before)["write_errors"] == 1 and "cannot write" in caplog.text
    np.testing.assert_allclose(got, _ew_torch(x), rtol=1e-6, atol=1e-7)


def test_cached_result_rebuilds_plan_and_serves_inspection(cache_dir):
    model, x = _mlp(), ember.randn(3, 5)
    cold = ember.compile(model)
    with ember.no_grad():
        cold(x)
    warm = ember.compile(model)
    with ember.no_grad():
        warm(x)
    a, b = cold.compiled_for(x).result, warm.compiled_for(x).result
    assert isinstance(b, CachedCompileResult) and not isinstance(a, CachedCompileResult)
    assert b.kernel_count == a.kernel_count
    assert [g.name for g in b.groups] == [g.name for g in a.groups] == list(b.executable.call_order)
    assert b.memory.arena_bytes == a.memory.arena_bytes == b.executable.arena_bytes
    assert warm.kernels(x) == cold.kernels(x)  # kernel IR and LLVM IR come back from the entry
    report = warm.bisect(x)
    assert report.ok and len(report.checks) == a.kernel_count


def test_frozen_weights_are_part_of_the_key(cache_dir):
    from ember.compiler.compile import compile_graph
    from ember.tracing import trace

    model, x = _mlp(), ember.randn(2, 5)
    with ember.no_grad():
        compile_graph(trace(model, x), freeze=True)
        before = dict(cache.STATS)
        compile_graph(trace(model, x), freeze=True)
        assert _delta(before)["hits"] == 1
        model[2].bias.add_(1.0)
        before = dict(cache.STATS)
        result = compile_graph(trace(model, x), freeze=True)
        assert _delta(before)["misses"] == 1
        from ember.runtime.cpu import CpuExecutable

        got = CpuExecutable(result.executable)(x.numpy())[0]
    np.testing.assert_allclose(got, _twin(model)(torch.from_numpy(x.numpy())).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_compiled_training_hits_for_forward_and_backward(cache_dir):
    x = ember.randn(3, 5)
    grads = []
    for expected_hits in (0, 2):
        model = _mlp()
        before = dict(cache.STATS)
        ember.compile(model)(x).pow(2).sum().backward()
        assert _delta(before)["hits"] == expected_hits
        grads.append(model[0].weight.grad.numpy())
    twin = _twin(_mlp())
    twin(torch.from_numpy(x.numpy())).pow(2).sum().backward()
    np.testing.assert_array_equal(grads[1], grads[0])
    np.testing.assert_allclose(grads[1], twin[0].weight.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_export_of_a_cache_hit_is_byte_identical(tmp_path, cache_dir):
    model, x = _mlp(), ember.randn(2, 5)
    plain = ember.export(model, (x,), str(tmp_path / "a.so"))
    warm = ember.compile(model)
    with ember.no_grad():
        warm(x)
    assert isinstance(warm.compiled_for(x).result, CachedCompileResult)
    os.makedirs(tmp_path / "b")
    hit = ember.export(warm, (x,), str(tmp_path / "b" / "a.so"))
    assert pathlib.Path(hit).read_bytes() == pathlib.Path(plain).read_bytes()
    got = ember.runtime.load(hit)(x.numpy())
    np.testing.assert_allclose(got, _twin(model)(torch.from_numpy(x.numpy())).detach().numpy(), rtol=1e-5,
                               atol=1e-6)
