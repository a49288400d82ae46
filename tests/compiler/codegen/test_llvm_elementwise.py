"""Every registered op with a ``lowering["scalar"]``: the generated kernel against the op's reference.

The op list comes from the registry, so a new elementwise op is tested as soon as it is defined. All
cases are compiled into ONE program (one LLVM module, one JIT compile) by a module-scoped fixture;
each op's test then checks its own outputs. Shapes cover the vector body and the scalar remainder
(37 = 4 * 8 + 5), broadcasting both ways, and a Python scalar operand.
"""

from __future__ import annotations

from typing import Any

import ember.compiler.ops  # noqa: F401  (fills the registry)
import numpy as np
import pytest
from ember.compiler.codegen.llvm.program import compile_groups
from ember.compiler.dtypes import bool_, float32, float64, from_numpy, int32
from ember.compiler.kernel.group import FusionGroup, GroupNode
from ember.compiler.kernel.lower import lower_group
from ember.compiler.ops.registry import REGISTRY, TensorType
from ember.runtime.errors import CompileError, EmberError

# one_hot (shape-changing) is an "index" lowering now, tested in test_llvm_coverage.py
SCALAR_OPS = sorted(op.name for op in REGISTRY if "scalar" in op.lowering and op.inputs)

# value ranges where the op is defined (default: standard normal)
DOMAIN: dict[str, tuple[float, float]] = {
    "log": (0.05, 20.0), "log2": (0.05, 20.0), "sqrt": (0.0, 20.0), "rsqrt": (0.05, 20.0),
    "log1p": (-0.9, 20.0), "asin": (-0.99, 0.99), "acos": (-0.99, 0.99), "pow": (0.1, 3.0),
    "binary_cross_entropy": (0.01, 0.99), "bce_log": (0.01, 2.0), "acosh": (1.0, 10.0),
    "atanh": (-0.99, 0.99), "tan": (-1.4, 1.4),
}
ATTRS: dict[str, dict[str, Any]] = {"cast": {"dtype": float64}}
EXTRA_ATTRS: dict[str, list[dict[str, Any]]] = {
    "div": [{"rounding_mode": "trunc"}, {"rounding_mode": "floor"}],
    "round": [{"decimals": 2}], "gelu": [{"approximate": "tanh"}],
    "softplus": [{"beta": 2.0, "threshold": 3.0}], "elu": [{"alpha": 0.5, "scale": 1.5, "input_scale": 2.0}],
    "cast": [{"dtype": int32}, {"dtype": bool_}],
}
UNARY_SHAPES = [(37,), (3, 4, 9)]
BINARY_SHAPES = [((37,), (37,)), ((4, 19), (19,)), ((3, 1, 8), (1, 5, 8)), ((6, 1), (6, 17))]


def _array(rng: np.random.Generator, op: str, shape: tuple[int, ...], dtype: Any,
           divisor: bool) -> np.ndarray:
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.dtype(dtype).kind == "i":
        x = rng.integers(-20, 21, size=shape).astype(dtype)
        return np.where(x == 0, 3, x).astype(dtype) if divisor else x
    lo, hi = DOMAIN.get(op, (None, None))
    if lo is None:
        x = rng.standard_normal(shape).astype(dtype)
        return np.where(np.abs(x) < 0.1, 0.5, x).astype(dtype) if divisor else x
    return rng.uniform(lo, hi, size=shape).astype(dtype)


def _type(x: Any) -> Any:
    return TensorType(x.shape, from_numpy(x.dtype)) if isinstance(x, np.ndarray) else x


def _attrs(op: Any, given: dict[str, Any], args: list[Any]) -> dict[str, Any]:
    attrs = op.check_attrs({**ATTRS.get(op.name, {}), **given})
    return op.normalize(attrs, *[_type(a) for a in args]) if op.normalize else attrs


def _try_case(op: Any, args: list[Any], given: dict[str, Any]) -> tuple[dict[str, Any], TensorType] | None:
    try:
        attrs = _attrs(op, given, args)
        return attrs, op.infer(*[_type(a) for a in args], **attrs)
    except EmberError:
        return None


def _cases(op_name: str) -> list[tuple[list[Any], dict[str, Any]]]:
    """(operands, attrs) cases: the first operand dtype the op accepts among float32, int32, bool."""
    op = REGISTRY[op_name]
    rng = np.random.default_rng(abs(hash(op_name)) % 2**32)
    n = len(op.inputs)
    shapes: list[tuple[tuple[int, ...], ...]] = [(s,) * n for s in UNARY_SHAPES] if n == 1 else \
        [tuple(pair) + ((pair[0],) * (n - 2)) for pair in BINARY_SHAPES]
    if n == 2:
        shapes.append(((5, 9), ()))  # second operand a Python scalar
    for dtype in (np.float32, np.int32, np.bool_):
        out = []
        for shape in shapes:
            args: list[Any] = []
            for i, s in enumerate(shape):
                dt = np.bool_ if (op_name == "where" and i == 0) else dtype
                arr = _array(rng, op_name, s, dt, divisor=i > 0)
                args.append(arr if s != () else arr.item() if dt != np.float32 else 0.75)
            for given in [{}] + EXTRA_ATTRS.get(op_name, []):
                if _try_case(op, args, given) is not None:
                    out.append((args, given))
        if out:
            return out
    return []


def _all_cases() -> list[tuple[str, int, FusionGroup, list[Any], np.ndarray]]:
    cases = []
    for name in SCALAR_OPS:
        op = REGISTRY[name]
        for k, (args, given) in enumerate(_cases(name)):
            attrs, out_t = _try_case(op, args, given)  # type: ignore[misc]
            tag = f"{name}_{k}"
            operands = tuple(f"{tag}_in{i}" if isinstance(a, np.ndarray) else a for i, a in enumerate(args))
            types = {o: _type(a) for o, a in zip(operands, args) if isinstance(o, str)}
            types[f"{tag}_out"] = out_t
            group = FusionGroup(tag, [GroupNode(name, operands, (f"{tag}_out",), attrs)], types,
                                [o for o in operands if isinstance(o, str)], [f"{tag}_out"])
            with np.errstate(all="ignore"):
                want = np.asarray(op.reference(np, *args, **attrs)).astype(out_t.dtype.np)
            cases.append((name, k, group, [a for a in args if isinstance(a, np.ndarray)], want))
    return cases


@pytest.fixture(scope="module")
def compiled() -> dict[str, Any]:
    """Lower every case (recording per-op lowering errors), compile all that lower as one program."""
    cases = _all_cases()
    errors: dict[str, str] = {}
    good = []
    for case in cases:
        try:
            lower_group(case[2])
        except CompileError as e:
            errors[case[0]] = str(e)
            continue
        good.append(case)
    inputs = [name for c in good for name in c[2].inputs]
    outputs = [c[2].outputs[0] for c in good]
    exe = compile_groups("elementwise_ops", [c[2] for c in good], inputs, outputs)
    results = exe(*[a for c in good for a in c[3]])
    got = {(c[0], c[1]): (r, c[4], c[2]) for c, r in zip(good, results)}
    count = {n: sum(1 for c in cases if c[0] == n) for n in SCALAR_OPS}
    return {"got": got, "errors": errors, "count": count}


def test_registry_has_elementwise_ops() -> None:
    assert {"add", "mul", "exp", "log", "tanh", "sigmoid", "where", "cast", "eq"} <= set(SCALAR_OPS)


@pytest.mark.parametrize("op_name", SCALAR_OPS)
def test_compiled_matches_reference(op_name: str, compiled: dict[str, Any]) -> None:
    assert op_name not in compiled["errors"], compiled["errors"].get(op_name)
    n = compiled["count"][op_name]
    assert n > 0, f"no input dtype accepted by {op_name}"
    for k in range(n):
        got, want, group = compiled["got"][(op_name, k)]
        assert got.dtype == want.dtype and got.shape == want.shape, group.name
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, equal_nan=True, err_msg=group.name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=group.name)


def test_op_without_kernel_is_a_compile_error_naming_it() -> None:
    t = TensorType((3, 3), float32)
    g = FusionGroup("g", [GroupNode("det", ("x",), ("y",))], {"x": t, "y": TensorType((), float32)},
                    ["x"], ["y"])
    with pytest.raises(CompileError, match="'det'"):
        lower_group(g)


def test_unknown_builder_function_is_a_compile_error_naming_the_op() -> None:
    from ember.compiler.kernel.builder import ExprBuilder

    with pytest.raises(CompileError, match="'myop'.*e.frobnicate"):
        ExprBuilder("myop").frobnicate(1.0)


def test_special_values_follow_ieee() -> None:
    """exp/log/tanh/sigmoid are inline polynomials: check infinities, NaN, zero, negatives, huge."""
    x = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-8, 88.0, 89.0, -87.0, -104.0, 1e30, -1e30, np.inf, -np.inf,
                  np.nan, -1.0, 0.5, 20.0, 1e-40], dtype=np.float32)
    t = TensorType(x.shape, float32)
    names = ["exp", "log", "tanh", "sigmoid"]
    groups = [FusionGroup(n, [GroupNode(n, ("x",), (f"{n}_y",))], {"x": t, f"{n}_y": t}, ["x"], [f"{n}_y"])
              for n in names]
    got = compile_groups("special", groups, ["x"], [f"{n}_y" for n in names])(x)
    with np.errstate(all="ignore"):
        want = [np.exp(x), np.log(x), np.tanh(x), 1 / (1 + np.exp(-x.astype(np.float64)))]
    for n, g, w in zip(names, got, want):
        w = np.asarray(w, dtype=np.float32)
        if n == "exp":  # results below 1.2e-38 flush to zero
            w = np.where(np.abs(w) < 1.2e-38, 0.0, w).astype(np.float32)
        np.testing.assert_allclose(g, w, rtol=3e-6, atol=1e-38, equal_nan=True, err_msg=n)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_float_dtypes(dtype: Any) -> None:
    """float64 computes in double (libm for exp/tanh), float16 in float rounded after every op."""
    x = np.random.default_rng(1).uniform(-3, 3, (3, 21)).astype(dtype)
    t = TensorType(x.shape, from_numpy(x.dtype))
    chain = [GroupNode("exp", ("x",), ("e",)), GroupNode("mul", ("e", "x"), ("m",)),
             GroupNode("tanh", ("m",), ("t",)), GroupNode("sigmoid", ("t",), ("y",))]
    g = FusionGroup("chain", chain, {"x": t, "e": t, "m": t, "t": t, "y": t}, ["x"], ["y"])
    (got,) = compile_groups(f"chain_{np.dtype(dtype).name}", [g], ["x"], ["y"])(x)
    assert got.dtype == dtype
    with np.errstate(all="ignore"):
        # the same per-op rounding as the kernel: each op computed in float32 (or float64), rounded
        work = np.float64 if dtype == np.float64 else np.float32
        e = np.exp(x.astype(work)).astype(dtype)
        m = (e.astype(work) * x.astype(work)).astype(dtype)
        tt = np.tanh(m.astype(work)).astype(dtype)
        want = (1 / (1 + np.exp(-tt.astype(work)))).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)
