"""ember.save / ember.load: the safe own format, PyTorch zip checkpoints, and refusal of code in files."""

from __future__ import annotations

import builtins
import collections
import io
import os
import pickle
import struct
import zipfile

import ember
import numpy as np
import pytest
import torch
from ember.runtime.errors import ArgumentError, PackageError

# ---- ember's own format ---------------------------------------------------------------------------------


def _roundtrip(obj, tmp_path=None):
    if tmp_path is None:
        buf = io.BytesIO()
        ember.save(obj, buf)
        buf.seek(0)
        return ember.load(buf)
    path = tmp_path / "ckpt.ember"
    ember.save(obj, path)
    return ember.load(str(path))


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32",
                                   "float64"])
def test_tensor_roundtrip_every_dtype(dtype, tmp_path):
    rng = np.random.default_rng(1)
    arr = (rng.standard_normal((2, 3, 4)) * 50).astype(dtype)
    t = ember.tensor(arr)
    back = _roundtrip(t, tmp_path)
    assert back.dtype is t.dtype and tuple(back.shape) == (2, 3, 4)
    np.testing.assert_array_equal(back.numpy(), arr)
    assert back.numpy().flags.writeable  # its own memory, not a read-only view of the file buffer


def test_nested_containers_roundtrip():
    t = ember.arange(6).reshape(2, 3)
    obj = {
        "weights": collections.OrderedDict([("a", ember.ones(2, 2)), ("b", ember.tensor(3.5))]),
        "list": [1, 2.5, None, "text", True, float("inf")],
        "tuple": (1, (2, [3])),
        7: "int key",
        (1, 2): "tuple key",
        "view": t.t(),  # non-contiguous
        "empty": ember.zeros(0, 3),
        "dtype": ember.float16,
        "device": ember.device("cpu"),
    }
    back = _roundtrip(obj)
    assert type(back["weights"]) is collections.OrderedDict and list(back["weights"]) == ["a", "b"]
    assert back["list"][:5] == [1, 2.5, None, "text", True] and back["list"][5] == float("inf")
    assert isinstance(back["list"][0], int) and isinstance(back["list"][1], float)
    assert back["tuple"] == (1, (2, [3])) and isinstance(back["tuple"][1][1], list)
    assert back[7] == "int key" and back[(1, 2)] == "tuple key"
    np.testing.assert_array_equal(back["view"].numpy(), np.arange(6).reshape(2, 3).T)
    assert tuple(back["empty"].shape) == (0, 3)
    assert back["weights"]["b"].shape == () and back["weights"]["b"].item() == 3.5
    assert back["dtype"] is ember.float16 and back["device"] == ember.device("cpu")


def test_nan_roundtrip_and_tensor_identity_kept():
    t = ember.tensor([1.0, float("nan")])
    back = _roundtrip({"x": t, "y": t, "n": float("nan")})
    assert back["x"] is back["y"]
    assert np.isnan(back["n"]) and np.isnan(back["x"].numpy()[1])


def test_requires_grad_and_parameter_roundtrip(tmp_path):
    p = ember.nn.Parameter(ember.tensor([1.0, 2.0]))
    g = ember.tensor([3.0], requires_grad=True)
    back = _roundtrip({"p": p, "g": g, "frozen": ember.nn.Parameter(ember.ones(1), requires_grad=False)},
                      tmp_path)
    assert isinstance(back["p"], ember.nn.Parameter) and back["p"].requires_grad
    assert back["g"].requires_grad and back["g"].is_leaf and not isinstance(back["g"], ember.nn.Parameter)
    assert not back["frozen"].requires_grad


def test_ember_module_state_dict_roundtrip(tmp_path):
    src = ember.nn.Linear(4, 3)
    path = tmp_path / "model.pt"
    ember.save(src.state_dict(), path)
    dst = ember.nn.Linear(4, 3)
    dst.load_state_dict(ember.load(path))
    np.testing.assert_array_equal(dst.weight.detach().numpy(), src.weight.detach().numpy())
    np.testing.assert_array_equal(dst.bias.detach().numpy(), src.bias.detach().numpy())


def test_ember_format_has_no_pickle(tmp_path):
    path = tmp_path / "x.ember"
    ember.save({"a": ember.ones(3)}, path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert not any(n.endswith(".pkl") for n in names)
        assert "ember/ember.json" in names


def test_unsupported_object_raises_argument_error():
    with pytest.raises(ArgumentError, match="cannot store an object of type"):
        ember.save({"f": lambda x: x}, io.BytesIO())


def test_bad_target_raises():
    with pytest.raises(ArgumentError):
        ember.save(ember.ones(1), 42)


def test_ember_file_with_mismatched_bytes_raises(tmp_path):
    path = tmp_path / "bad.ember"
    ember.save(ember.ones(4), path)
    with zipfile.ZipFile(path) as zf:
        meta = zf.read("ember/ember.json").replace(b'"shape":[4]', b'"shape":[400]')
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ember/ember.json", meta)
        zf.writestr("ember/tensors/0", np.ones(4, np.float32).tobytes())
    with pytest.raises(PackageError, match="holds 16 bytes, 1600 needed"):
        ember.load(path)


# ---- PyTorch checkpoints ---------------------------------------------------------------------------------


def _torch_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                                torch.nn.Linear(4, 2))
    model(torch.randn(5, 3))  # updates the running statistics
    return model


def test_torch_state_dict_loads_with_equal_values(tmp_path):
    model = _torch_model()
    path = tmp_path / "torch_model.pt"
    torch.save(model.state_dict(), path)
    sd = ember.load(path)
    ref = model.state_dict()
    assert list(sd) == list(ref)
    for k, v in ref.items():
        assert str(sd[k].dtype).split(".")[-1] == str(v.dtype).split(".")[-1]
        np.testing.assert_array_equal(sd[k].numpy(), v.numpy())
    assert sd["1.num_batches_tracked"].dtype is ember.int64 and sd["1.num_batches_tracked"].item() == 1


def test_torch_state_dict_loads_into_ember_module(tmp_path):
    lin = torch.nn.Linear(3, 2)
    buf = io.BytesIO()
    torch.save(lin.state_dict(), buf)
    buf.seek(0)
    mine = ember.nn.Linear(3, 2)
    mine.load_state_dict(ember.load(buf, map_location="cpu"))
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(mine(ember.tensor(x)).detach().numpy(), lin(torch.tensor(x)).detach().numpy(),
                               rtol=1e-6, atol=1e-6)


def test_torch_tensors_views_parameters_and_dtypes(tmp_path):
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    obj = {
        "param": torch.nn.Parameter(torch.tensor([1.5, -2.0])),
        "t": base.t(),              # strided view
        "row": base[1],             # offset into the same storage
        "half": torch.tensor([0.5, 2.0], dtype=torch.float16),
        "mask": torch.tensor([True, False]),
        "int8": torch.tensor([-3, 4], dtype=torch.int8),
        "scalar": torch.tensor(7),
        "nested": [(1, "a"), {"k": torch.zeros(2, 0)}],
    }
    path = tmp_path / "misc.pt"
    torch.save(obj, path)
    got = ember.load(path, map_location=ember.device("cpu"))
    assert isinstance(got["param"], ember.nn.Parameter) and got["param"].requires_grad
    np.testing.assert_array_equal(got["param"].detach().numpy(), [1.5, -2.0])
    np.testing.assert_array_equal(got["t"].numpy(), base.t().numpy())
    np.testing.assert_array_equal(got["row"].numpy(), base[1].numpy())
    assert got["half"].dtype is ember.float16 and got["mask"].dtype is ember.bool
    np.testing.assert_array_equal(got["int8"].numpy(), [-3, 4])
    assert got["scalar"].shape == () and got["scalar"].item() == 7
    assert got["nested"][0] == (1, "a") and tuple(got["nested"][1]["k"].shape) == (2, 0)


# ---- hand-made PyTorch-style archives ---------------------------------------------------------------------


def _u(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _ints(xs) -> bytes:
    return b"(" + b"".join(_int(x) for x in xs) + b"t"


def _tensor_pickle(storage_type="FloatStorage", numel=4, offset=0, size=(2, 2), stride=(2, 1),
                   location="cpu"):
    """The pickle torch.save writes for one tensor, spelled out opcode by opcode."""
    pid = b"(" + _u("storage") + b"ctorch\n" + storage_type.encode() + b"\n" + _u("0") + _u(location) \
        + _int(numel) + b"tQ"
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _int(offset) + _ints(size) + _ints(stride)
            + b"\x89ccollections\nOrderedDict\n)RtR.")


def _archive(pickle_bytes: bytes, storage: bytes = b"", path=None) -> io.BytesIO | os.PathLike:
    target = io.BytesIO() if path is None else path
    with zipfile.ZipFile(target, "w") as zf:
        zf.writestr("archive/data.pkl", pickle_bytes)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", storage)
        zf.writestr("archive/version", "3\n")
    if path is None:
        target.seek(0)
    return target


def test_hand_made_archive_loads():
    t = ember.load(_archive(_tensor_pickle(), np.arange(4, dtype=np.float32).tobytes()))
    np.testing.assert_array_equal(t.numpy(), [[0, 1], [2, 3]])


def test_big_endian_archive_loads():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", _tensor_pickle())
        zf.writestr("archive/byteorder", "big")
        zf.writestr("archive/data/0", np.arange(4, dtype=">f4").tobytes())
    buf.seek(0)
    np.testing.assert_array_equal(ember.load(buf).numpy(), [[0, 1], [2, 3]])


def test_strides_past_the_storage_raise():
    data = np.arange(4, dtype=np.float32).tobytes()
    with pytest.raises(PackageError, match="reads past the end of its storage"):
        ember.load(_archive(_tensor_pickle(size=(2, 2), stride=(100, 1)), data))
    with pytest.raises(PackageError, match="invalid tensor geometry"):
        ember.load(_archive(_tensor_pickle(size=(2, 2), stride=(-2, 1), offset=3), data))


def test_storage_shorter_than_declared_raises():
    with pytest.raises(PackageError, match="holds 8 bytes, 16 needed"):
        ember.load(_archive(_tensor_pickle(), np.zeros(2, np.float32).tobytes()))


def test_unknown_storage_type_raises():
    with pytest.raises(PackageError, match="torch.BFloat16Storage"):
        ember.load(_archive(_tensor_pickle(storage_type="BFloat16Storage"), b"\0" * 8))


def test_map_location_for_a_cuda_checkpoint():
    data = np.arange(4, dtype=np.float32).tobytes()
    for where in ("cpu", {"cuda:0": "cpu"}, lambda t, loc: t, ember.device("cpu")):
        t = ember.load(_archive(_tensor_pickle(location="cuda:0"), data), map_location=where)
        assert t.device == ember.device("cpu")
        np.testing.assert_array_equal(t.numpy(), [[0, 1], [2, 3]])


# ---- code in files is never run ---------------------------------------------------------------------------


class _RunsShell:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class _RunsPython:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.path)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("payload", [_RunsShell, _RunsPython])
def test_malicious_pickle_in_archive_raises_and_runs_nothing(payload, tmp_path):
    marker = tmp_path / "side_effect"
    evil = pickle.dumps(collections.OrderedDict(w=payload(marker)), protocol=2)
    path = tmp_path / "evil.pt"
    _archive(evil, path=path)
    with pytest.raises(PackageError, match=r"the global '(posix\.system|__builtin__\.exec)'"):
        ember.load(path)
    with pytest.raises(PackageError):
        ember.load(path, weights_only=False)  # ember has no unsafe mode
    assert not marker.exists()


def test_malicious_plain_pickle_file_raises_and_runs_nothing(tmp_path):
    marker = tmp_path / "side_effect"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_RunsShell(marker)))
    with pytest.raises(PackageError):
        ember.load(path)
    assert not marker.exists()


def test_malicious_global_inside_storage_reference_raises(tmp_path):
    marker = tmp_path / "side_effect"
    evil = _tensor_pickle().replace(b"ctorch\nFloatStorage\n", b"cos\nsystem\n" + _u(f"touch {marker}")
                                    + b"\x85R")
    with pytest.raises(PackageError, match="'os.system'"):
        ember.load(_archive(evil, b"\0" * 16))
    assert not marker.exists()


def test_build_on_a_tensor_is_refused():
    evil = _tensor_pickle()[:-1] + b"}" + _u("_data") + _u("x") + b"sb."  # BUILD with a state dict
    with pytest.raises(PackageError, match="set attributes on a tensor"):
        ember.load(_archive(evil, np.zeros(4, np.float32).tobytes()))


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_truncated_files_raise(cut, tmp_path):
    for writer in (torch.save, ember.save):
        buf = io.BytesIO()
        writer({"w": torch.ones(64) if writer is torch.save else ember.ones(64)}, buf)
        data = buf.getvalue()
        with pytest.raises(PackageError):
            ember.load(io.BytesIO(data[: int(len(data) * cut)]))


def test_random_and_empty_files_raise(tmp_path):
    rng = np.random.default_rng(0)
    for blob in (rng.bytes(1000), b"", b"PK\x03\x04" + rng.bytes(200)):
        path = tmp_path / "junk.bin"
        path.write_bytes(blob)
        with pytest.raises(PackageError):
            ember.load(path)


def test_zip_that_is_neither_format_raises(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(PackageError, match="neither an ember checkpoint nor a PyTorch one"):
        ember.load(path)
