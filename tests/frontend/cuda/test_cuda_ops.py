"""Every registry primitive, eager on a CUDA device vs eager on the CPU: the calls that real workloads make
(cuda_op_replay.py) are replayed with their tensors on the device. On the fake GPU the numbers must be
identical (its memory is numpy's) and the stand-in's cupy rules catch a reference that hands a device
array to numpy; on a real GPU they must agree to float tolerance."""

from __future__ import annotations

from typing import Any

import cuda_op_replay
import ember
import numpy as np
import pytest

# References that convert their inputs to numpy on the host (np.asarray on a cupy array raises), so they
# fail on a real GPU. They live in compiler/ops (not this area); each entry names the line. The replay
# test below is strict about them: when one is fixed, its xfail turns into a failure and it must go.
HOST_ONLY: dict[str, str] = {}


@pytest.fixture(scope="module")
def calls() -> dict[str, list[Any]]:
    return cuda_op_replay.record()


def test_the_workloads_reach_every_primitive(calls: dict[str, list[Any]]) -> None:
    assert cuda_op_replay.uncovered(calls) == []


def _check_op(name: str, calls: dict[str, list[Any]], device_type: type, exact: bool) -> None:
    ran = 0
    for call in calls[name]:
        if not any(call.is_tensor):
            continue  # a creation op: its device comes from the caller, not from inputs
        outs = cuda_op_replay.replay(call, lambda t: t.cuda(), lambda o: o)
        for got, want in zip(outs, call.outs):
            assert got.device == ember.device("cuda:0") and isinstance(got._data, device_type), name
            host = got.cpu().numpy()
            assert host.dtype == want.dtype and host.shape == want.shape, name
            if exact or want.dtype.kind not in "fc":
                np.testing.assert_array_equal(host, want, err_msg=name)
            else:
                tol = 1e-3 if want.dtype == np.float16 else 1e-4 if want.dtype == np.float32 else 1e-10
                np.testing.assert_allclose(host, want, rtol=tol, atol=tol, err_msg=name)
        ran += 1
    assert ran or all(not any(c.is_tensor) for c in calls[name])


def _params() -> list[Any]:
    from ember.compiler.ops import REGISTRY

    names = sorted(op.name for op in REGISTRY if op.reference is not None)
    return [pytest.param(n, marks=pytest.mark.xfail(raises=TypeError, strict=True, reason=HOST_ONLY[n]))
            if n in HOST_ONLY else n for n in names]


@pytest.mark.parametrize("name", _params())
def test_op_on_the_fake_gpu_equals_the_cpu(name: str, calls: dict[str, list[Any]], fake_cuda: Any) -> None:
    _check_op(name, calls, fake_cuda.ndarray, exact=True)


@pytest.mark.parametrize("name", _params())
def test_op_on_a_real_gpu_matches_the_cpu(name: str, calls: dict[str, list[Any]], real_cuda: Any) -> None:
    _check_op(name, calls, real_cuda.ndarray, exact=False)
