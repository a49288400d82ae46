"""Kernel IR: the loop-level program both back ends (LLVM, CUDA C) generate code from.

Why it looks the way it does:

* Expressions are frozen dataclasses, so equal subtrees compare and hash equal: code generators get
  common-subexpression elimination from a dict, and tests compare trees with ``==``.
* A ``Load``/``Store`` addresses a buffer by one flat element offset (an index expression over loop
  variables). Lowering folds shapes, strides, broadcasting and views into that offset, so code
  generators never see a shape; the ``Buffer`` keeps shape and strides for printing and checks.
* Loops carry a ``LoopKind`` chosen by the schedule (parallel outer loop, vectorized inner loop, ...);
  code generators honour the kinds they support and run the others serially, which is always correct.
* Locals are scalar registers (accumulators); ``Reduce`` names the combining op so a vectorizing code
  generator can keep a vector of partial results and combine them after the loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ember.compiler.dtypes import DType, bool_, float32, int64

__all__ = [
    "Alloc", "Assign", "Barrier", "Binary", "Buffer", "Cast", "Const", "Declare", "Expr", "Gemm", "Kernel",
    "Load", "Local", "Loop", "LoopKind", "Reduce", "Select", "Stmt", "Store", "Unary", "Var", "UNARY_OPS",
    "BINARY_OPS", "COMPARE_OPS", "REDUCE_OPS", "format_kernel", "linear_coeff", "free_vars",
]

UNARY_OPS = frozenset({
    "neg", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "tanh", "sigmoid", "sqrt", "rsqrt",
    "abs", "floor", "ceil", "round", "trunc", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh",
    "asinh", "acosh", "atanh", "erf", "reciprocal", "sign", "not", "isnan", "isinf", "isfinite",
})
BINARY_OPS = frozenset({"add", "sub", "mul", "div", "floordiv", "truncdiv", "mod", "max", "min", "pow",
                        "atan2", "and", "or", "xor", "shl", "shr", "fmod", "remainder"})
COMPARE_OPS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
REDUCE_OPS = frozenset({"add", "mul", "max", "min", "and", "or"})


class LoopKind(enum.Enum):
    SERIAL = "serial"
    PARALLEL = "parallel"        # iterations split across threads (outermost loops only)
    VECTORIZED = "vectorized"    # innermost loop run ``width`` lanes at a time, plus a scalar remainder
    UNROLLED = "unrolled"
    GPU_BLOCK = "gpu_block"
    GPU_THREAD = "gpu_thread"


# --------------------------------------------------------------------------------------------------
# expressions


class Expr:
    """Base of scalar expressions. Every expression has a ``dtype``."""

    dtype: DType


@dataclass(frozen=True)
class Const(Expr):
    value: Any
    dtype: DType
    weak: bool = False  # a Python scalar operand: promotes like PyTorch's wrapped numbers


@dataclass(frozen=True)
class Var(Expr):
    """A loop variable (int64)."""

    name: str
    dtype: DType = int64


@dataclass(frozen=True)
class Load(Expr):
    buffer: str
    index: Expr
    dtype: DType


@dataclass(frozen=True)
class Local(Expr):
    """Read of a local scalar declared by ``Declare``."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class Unary(Expr):
    op: str
    x: Expr
    dtype: DType


@dataclass(frozen=True)
class Binary(Expr):
    """Arithmetic (``BINARY_OPS``, result dtype = operands' dtype) or comparison (``COMPARE_OPS``, bool)."""

    op: str
    a: Expr
    b: Expr
    dtype: DType


@dataclass(frozen=True)
class Select(Expr):
    cond: Expr
    a: Expr
    b: Expr
    dtype: DType


@dataclass(frozen=True)
class Cast(Expr):
    x: Expr
    dtype: DType


def _cached_hash(self: Expr) -> int:
    """Expressions are immutable trees that lowering and codegen use as dict keys over and over (a
    Philox round is a DAG whose unfolded tree is ~100x its node count), so each hashes its fields once.
    The value lives in the instance dict, outside the dataclass fields (eq, repr and replace ignore it)."""
    h = self.__dict__.get("_hash")
    if h is None:
        h = hash((type(self).__name__,) + tuple(self.__dict__[f] for f in self.__dataclass_fields__))
        object.__setattr__(self, "_hash", h)
    return h


for _cls in (Const, Var, Load, Local, Unary, Binary, Select, Cast):
    _cls.__hash__ = _cached_hash  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------------
# statements and kernels


@dataclass(frozen=True)
class Buffer:
    """A kernel parameter or local array: ``shape``/``strides`` in elements, row-major by default."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    strides: tuple[int, ...] | None = None
    scope: str = "global"  # "global" (a kernel parameter) or "local" (Alloc)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


class Stmt:
    """Base of statements."""


@dataclass(frozen=True)
class Store(Stmt):
    buffer: str
    index: Expr
    value: Expr


@dataclass(frozen=True)
class Declare(Stmt):
    """A local scalar with its initial value."""

    name: str
    dtype: DType
    init: Expr


@dataclass(frozen=True)
class Assign(Stmt):
    """``name = value``: overwrite a local (argmax-style updates that are not a plain combine)."""

    name: str
    value: Expr


@dataclass(frozen=True)
class Reduce(Stmt):
    """``name = op(name, value)`` with ``op`` in ``REDUCE_OPS``: an accumulation."""

    name: str
    op: str
    value: Expr


@dataclass(frozen=True)
class Loop(Stmt):
    var: str
    extent: int
    body: tuple[Stmt, ...]
    kind: LoopKind = LoopKind.SERIAL


@dataclass(frozen=True)
class Alloc(Stmt):
    """A local array, live until the end of the enclosing block."""

    buffer: Buffer


@dataclass(frozen=True)
class Barrier(Stmt):
    """All threads of a GPU block wait here (a no-op on the CPU)."""


@dataclass(frozen=True)
class Im2col:
    """How a ``Gemm`` reads its B straight from a padded image (implicit GEMM: no im2col matrix is
    stored). With ``k = (c, i, j)`` over (channels, ``kh``, ``kw``) and ``n = (oh, ow)`` over (output rows,
    ``wout``)::

        B[k, n] = b[b_off + c * plane + i * dh * wp + j * dw + oh * sh * wp + ow * sw]

    ``plane`` and ``wp`` are the padded image's channel stride and row stride, ``dh``/``dw`` the dilation,
    ``sh``/``sw`` the stride. Every address is inside the padded image (the padding is real zeros).
    With ``positions`` > 0 the columns run over several images side by side (the batched schedule):
    column ``n`` is position ``n % positions`` of image ``n // positions``, which starts
    ``image_stride`` elements after the previous one.

    ``transposed``: B is the transpose of that matrix, ``B[k, n] = im2col[n, k]`` (the convolution weight
    gradient ``dW[Co, C*kh*kw] = dY[Co, N*P] @ im2col^T``): rows ``k`` are the positions (over images by
    ``positions``/``image_stride`` as above), columns ``n`` the taps ``(c, i, j)``. The ``Gemm`` keeps
    ``trans_b=False``: the formula already gives B in ``[K, N]`` orientation."""

    plane: int
    wp: int
    kh: int
    kw: int
    dh: int
    dw: int
    wout: int
    sh: int
    sw: int
    positions: int = 0
    image_stride: int = 0
    transposed: bool = False


@dataclass(frozen=True)
class Gemm(Stmt):
    """``C = epilogue(A @ B)`` on float32 row-major matrices by the GEMM template.

    ``a``/``b``/``c`` name buffers, ``*_off`` are element offsets (expressions, so a batch loop can
    move them), ``ld*`` the row strides. ``operands`` maps epilogue operand names (col_scale, col_bias,
    row_scale, row_bias, residual) to ``(buffer, offset)``; ``ldr`` is the residual's row stride.
    ``epilogue`` is a ``codegen.llvm.gemm.Epilogue``-like hashable object. ``b_image``: B is the
    im2col matrix of the image at ``b[b_off]``, read in place (``Im2col``; ``ldb`` and ``trans_b``
    are then unused).
    """

    m: int
    n: int
    k: int
    a: str
    a_off: Expr
    lda: int
    b: str
    b_off: Expr
    ldb: int
    c: str
    c_off: Expr
    ldc: int
    trans_b: bool
    epilogue: Any
    operands: tuple[tuple[str, str, Expr], ...] = ()
    ldr: int = 0
    b_image: Im2col | None = None


@dataclass
class Kernel:
    """One generated function: its buffer parameters (in call order) and its body."""

    name: str
    params: tuple[Buffer, ...]
    body: tuple[Stmt, ...]
    meta: dict[str, Any] = field(default_factory=dict)  # free-form notes for reports (group, schedule)

    def param(self, name: str) -> Buffer:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"kernel {self.name!r} has no buffer {name!r}")

    def __str__(self) -> str:
        return format_kernel(self)


# --------------------------------------------------------------------------------------------------
# analysis helpers


def free_vars(e: Expr) -> frozenset[str]:
    """Loop variables an expression reads."""
    if isinstance(e, Var):
        return frozenset((e.name,))
    out: frozenset[str] = frozenset()
    for child in _children(e):
        out |= free_vars(child)
    return out


def _children(e: Expr) -> tuple[Expr, ...]:
    if isinstance(e, (Unary, Cast)):
        return (e.x,)
    if isinstance(e, Binary):
        return (e.a, e.b)
    if isinstance(e, Select):
        return (e.cond, e.a, e.b)
    if isinstance(e, Load):
        return (e.index,)
    return ()


def linear_coeff(e: Expr, var: str) -> int | None:
    """The integer ``c`` with ``e = c * var + (terms free of var)``, or None when ``e`` is not affine in
    ``var`` (a division, a modulo or a load of it). Used to pick vector loads versus gathers."""
    if isinstance(e, Var):
        return 1 if e.name == var else 0
    if isinstance(e, (Const, Local)):
        return 0
    if var not in free_vars(e):
        return 0
    if isinstance(e, Binary) and e.op in ("add", "sub"):
        ca, cb = linear_coeff(e.a, var), linear_coeff(e.b, var)
        if ca is None or cb is None:
            return None
        return ca + cb if e.op == "add" else ca - cb
    if isinstance(e, Binary) and e.op == "mul":
        for x, y in ((e.a, e.b), (e.b, e.a)):
            if isinstance(y, Const):
                c = linear_coeff(x, var)
                return None if c is None else c * int(y.value)
    return None


# --------------------------------------------------------------------------------------------------
# printer

_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "eq": "==",
          "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "and": "&", "or": "|", "xor": "^",
          "shl": "<<", "shr": ">>"}


def format_expr(e: Expr) -> str:
    """One-line text of an expression; loads print as ``buf[index]``, casts as ``f32(x)``."""
    if isinstance(e, Const):
        if e.dtype is bool_:
            return "true" if e.value else "false"
        return repr(e.value) if e.dtype in (float32, int64) else f"{e.value!r}:{e.dtype.name}"
    if isinstance(e, (Var, Local)):
        return e.name
    if isinstance(e, Load):
        return f"{e.buffer}[{format_expr(e.index)}]"
    if isinstance(e, Binary):
        if e.op in _INFIX:
            return f"({format_expr(e.a)} {_INFIX[e.op]} {format_expr(e.b)})"
        return f"{e.op}({format_expr(e.a)}, {format_expr(e.b)})"
    if isinstance(e, Unary):
        return f"{e.op}({format_expr(e.x)})"
    if isinstance(e, Select):
        return f"select({format_expr(e.cond)}, {format_expr(e.a)}, {format_expr(e.b)})"
    if isinstance(e, Cast):
        return f"{e.dtype.name}({format_expr(e.x)})"
    return repr(e)


def _strip(text: str) -> str:
    return text[1:-1] if text.startswith("(") and text.endswith(")") else text


def _format_stmt(s: Stmt, indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    if isinstance(s, Loop):
        kind = "" if s.kind is LoopKind.SERIAL else s.kind.value + " "
        lines.append(f"{pad}{kind}for {s.var} in 0..{s.extent}:")
        for inner in s.body:
            _format_stmt(inner, indent + 1, lines)
    elif isinstance(s, Store):
        lines.append(f"{pad}{s.buffer}[{_strip(format_expr(s.index))}] = {_strip(format_expr(s.value))}")
    elif isinstance(s, Declare):
        lines.append(f"{pad}{s.dtype.name} {s.name} = {_strip(format_expr(s.init))}")
    elif isinstance(s, Assign):
        lines.append(f"{pad}{s.name} = {_strip(format_expr(s.value))}")
    elif isinstance(s, Reduce):
        lines.append(f"{pad}{s.name} = {s.op}({s.name}, {_strip(format_expr(s.value))})")
    elif isinstance(s, Alloc):
        b = s.buffer
        lines.append(f"{pad}local {b.name}: {b.dtype.name}[{','.join(map(str, b.shape))}]")
    elif isinstance(s, Barrier):
        lines.append(f"{pad}barrier")
    elif isinstance(s, Gemm):
        ops = "".join(f", {n}={buf}[{_strip(format_expr(off))}]" for n, buf, off in s.operands)
        tb = "^T" if s.trans_b else ""
        if s.b_image is not None:
            g = s.b_image
            images = f" images={g.positions}/{g.image_stride}" if g.positions else ""
            tb = (f" im2col(k={g.kh}x{g.kw} stride={g.sh}x{g.sw} dilation={g.dh}x{g.dw} wout={g.wout} "
                  f"wp={g.wp} plane={g.plane}{images}){'^T' if g.transposed else ''}")
        lines.append(
            f"{pad}{s.c}[{_strip(format_expr(s.c_off))}] = gemm[{s.m}x{s.n}x{s.k}]"
            f"({s.a}[{_strip(format_expr(s.a_off))}], {s.b}[{_strip(format_expr(s.b_off))}]{tb}"
            f"{ops}; epilogue={getattr(s.epilogue, 'tag', s.epilogue)})"
        )
    else:
        lines.append(f"{pad}{s!r}")


def format_kernel(k: Kernel) -> str:
    """Readable text of a kernel (for reports, debugging and golden tests)."""
    params = ", ".join(f"{p.name}: {p.dtype.name}[{','.join(map(str, p.shape))}]" for p in k.params)
    lines = [f"kernel {k.name}({params}):"]
    for s in k.body:
        _format_stmt(s, 1, lines)
    return "\n".join(lines)
