"""L-BFGS with an optional strong-Wolfe line search, following PyTorch's algorithm step for step so that
trajectories agree: two-loop recursion over at most ``history_size`` curvature pairs, the first step
scaled by ``min(1, 1 / |g|_1) * lr``, and the same stopping rules.

Scalars of the algorithm (step length, curvature products) are Python floats; vectors are flat ember
tensors holding every parameter end to end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ember
from ember.optim.optimizer import Optimizer
from ember.runtime.errors import ArgumentError


def _dot(a: Any, b: Any) -> float:
    return float((a * b).sum().item())


def _cubic_interpolate(
    x1: float,
    f1: float,
    g1: float,
    x2: float,
    f2: float,
    g2: float,
    bounds: tuple[float, float] | None = None,
) -> float:
    """Minimizer of the cubic through two points with their slopes, clipped to ``bounds`` (or the
    interval); the midpoint when the cubic has no minimum."""
    lo, hi = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(pos, lo), hi)


class _Bracket:
    """The zoom phase's interval: two step lengths with their losses, gradients and slopes."""

    def __init__(self, t: list[float], f: list[float], g: list[Any], gtd: list[float]) -> None:
        self.t, self.f, self.g, self.gtd = t, f, g, gtd

    def order(self) -> tuple[int, int]:
        return (0, 1) if self.f[0] <= self.f[-1] else (1, 0)

    def set(self, i: int, t: float, f: float, g: Any, gtd: float) -> None:
        self.t[i], self.f[i], self.g[i], self.gtd[i] = t, f, g, gtd


def _strong_wolfe(
    obj: Callable[[float], tuple[float, Any]],
    t: float,
    d: Any,
    f: float,
    g: Any,
    gtd: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
) -> tuple[float, Any, float, int]:
    """Find a step length satisfying the strong Wolfe conditions: bracket, then zoom by cubic
    interpolation. Returns (loss, flat gradient, step, evaluations)."""
    d_norm = float(d.abs().amax().item())
    br, evals, done, ls_iter = _bracket(obj, t, d, f, g, gtd, c1, c2, max_ls)
    low, high = br.order()
    insuf_progress = False
    while not done and ls_iter < max_ls:
        if abs(br.t[1] - br.t[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(br.t[0], br.f[0], br.gtd[0], br.t[1], br.f[1], br.gtd[1])
        t, insuf_progress = _keep_inside(t, br.t, insuf_progress)
        f_new, g_new = obj(t)
        evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= br.f[low]:
            br.set(high, t, f_new, g_new, gtd_new)
            low, high = br.order()
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (br.t[high] - br.t[low]) >= 0:
                br.set(high, br.t[low], br.f[low], br.g[low], br.gtd[low])
            br.set(low, t, f_new, g_new, gtd_new)
    return br.f[low], br.g[low], br.t[low], evals


def _bracket(
    obj: Callable[[float], tuple[float, Any]],
    t: float,
    d: Any,
    f: float,
    g: Any,
    gtd: float,
    c1: float,
    c2: float,
    max_ls: int,
) -> tuple[_Bracket, int, bool, int]:
    """The line search's first phase: grow the step (cubic extrapolation) until an interval is known to
    hold a point satisfying the strong Wolfe conditions, or such a point is hit (``done``).
    Returns (bracket, evaluations, done, iterations)."""
    f_new, g_new = obj(t)
    evals = 1
    gtd_new = _dot(g_new, d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    ls_iter = 0
    while ls_iter < max_ls:
        pair = ([t_prev, t], [f_prev, f_new], [g_prev, g_new], [gtd_prev, gtd_new])
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            return _Bracket(*pair), evals, False, ls_iter
        if abs(gtd_new) <= -c2 * gtd:
            return _Bracket([t], [f_new], [g_new], [gtd_new]), evals, True, ls_iter
        if gtd_new >= 0:
            return _Bracket(*pair), evals, False, ls_iter
        bounds = (t + 0.01 * (t - t_prev), t * 10)
        t_prev, f_prev, g_prev, gtd_prev, t = (
            t,
            f_new,
            g_new,
            gtd_new,
            _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=bounds),
        )
        f_new, g_new = obj(t)
        evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
    return _Bracket([0.0, t], [f, f_new], [g, g_new], [gtd, gtd_new]), evals, False, ls_iter


def _keep_inside(t: float, bracket: list[float], insuf_progress: bool) -> tuple[float, bool]:
    """Pull a trial step that lands too close to the bracket's ends back inside by 10% of its width."""
    hi, lo = max(bracket), min(bracket)
    eps = 0.1 * (hi - lo)
    if min(hi - t, t - lo) >= eps:
        return t, False
    if insuf_progress or t >= hi or t <= lo:
        return (hi - eps if abs(t - hi) < abs(t - lo) else lo + eps), False
    return t, True


class LBFGS(Optimizer):
    """Limited-memory BFGS. ``step`` needs a closure that zeroes the gradients, recomputes the loss,
    calls ``backward`` and returns the loss; one call runs up to ``max_iter`` iterations.

    >>> w = ember.zeros(2, requires_grad=True)
    >>> opt = ember.optim.LBFGS([w], line_search_fn="strong_wolfe")
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        if lr < 0.0:
            raise ArgumentError(f"Invalid learning rate: {lr}")
        if line_search_fn not in (None, "strong_wolfe"):
            raise ArgumentError(
                f"LBFGS: only 'strong_wolfe' is supported as line_search_fn, got {line_search_fn!r}"
            )
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        )
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ArgumentError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]

    # ---- flat views of all parameters -----------------------------------------------------------------

    def _gather_flat_grad(self) -> Any:
        parts = [
            p.grad.reshape(-1) if p.grad is not None else ember.zeros(p.numel(), dtype=p.dtype)
            for p in self._params
        ]
        return ember.cat(parts, 0)

    def _add_grad(self, step: float, update: Any) -> None:
        offset = 0
        for p in self._params:
            n = p.numel()
            p.add_(update[offset : offset + n].reshape(p.shape) * step)
            offset += n

    def _directional_evaluate(
        self, closure: Callable[[], Any], x: list[Any], t: float, d: Any
    ) -> tuple[float, Any]:
        self._add_grad(t, d)
        with ember.enable_grad():
            loss = float(closure())
        flat_grad = self._gather_flat_grad()
        for p, saved in zip(self._params, x):
            p[...] = saved
        return loss, flat_grad

    # ---- the iteration ---------------------------------------------------------------------------------

    def _direction(self, state: dict[str, Any], flat_grad: Any, history_size: int) -> Any:
        """Update the curvature history with the last step, then the two-loop recursion's direction."""
        y = flat_grad - state["prev_flat_grad"]
        s = state["d"] * state["t"]
        ys = _dot(y, s)
        if ys > 1e-10:
            if len(state["old_dirs"]) == history_size:
                for key in ("old_dirs", "old_stps", "ro"):
                    state[key].pop(0)
            state["old_dirs"].append(y)
            state["old_stps"].append(s)
            state["ro"].append(1.0 / ys)
            state["H_diag"] = ys / _dot(y, y)
        dirs, stps, ro = state["old_dirs"], state["old_stps"], state["ro"]
        al = [0.0] * len(dirs)
        q = -flat_grad
        for i in range(len(dirs) - 1, -1, -1):
            al[i] = _dot(stps[i], q) * ro[i]
            q = q - dirs[i] * al[i]
        r = q * state["H_diag"]
        for i in range(len(dirs)):
            be_i = _dot(dirs[i], r) * ro[i]
            r = r + stps[i] * (al[i] - be_i)
        return r

    @ember.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # noqa: C901
        """Run up to ``max_iter`` L-BFGS iterations; returns the loss the closure gave at the start."""
        if closure is None:
            raise ArgumentError("LBFGS.step requires a closure that recomputes the loss")
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        with ember.enable_grad():
            orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        if float(flat_grad.abs().amax().item()) <= tol_grad:
            return orig_loss
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                state.update(old_dirs=[], old_stps=[], ro=[], H_diag=1.0)
            else:
                d = self._direction(state, flat_grad, group["history_size"])
            state["prev_flat_grad"] = flat_grad.clone()
            prev_loss = loss
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(flat_grad.abs().sum().item())) * lr
            else:
                t = lr
            gtd = _dot(flat_grad, d)
            if gtd > -tol_change:
                break
            loss, flat_grad, t, ls_evals, opt_cond = self._advance(
                closure, group, loss, flat_grad, t, d, gtd, last=n_iter == max_iter
            )
            state["d"], state["t"], state["prev_loss"] = d, t, prev_loss
            current_evals += ls_evals
            state["func_evals"] += ls_evals
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if float((d * t).abs().amax().item()) <= tol_change or abs(loss - prev_loss) < tol_change:
                break
        state["d"], state["t"] = d, t
        return orig_loss

    def _advance(
        self,
        closure: Callable[[], Any],
        group: dict[str, Any],
        loss: float,
        flat_grad: Any,
        t: float,
        d: Any,
        gtd: float,
        last: bool,
    ) -> tuple[float, Any, float, int, bool]:
        """Move along ``d`` (line search or fixed step); returns the new loss, gradient, step, evaluations
        spent and whether the gradient is now below ``tolerance_grad``."""
        tol_grad = group["tolerance_grad"]
        if group["line_search_fn"] == "strong_wolfe":
            x_init = [p.clone() for p in self._params]

            def obj(step: float) -> tuple[float, Any]:
                return self._directional_evaluate(closure, x_init, step, d)

            loss, flat_grad, t, evals = _strong_wolfe(obj, t, d, loss, flat_grad, gtd)
            self._add_grad(t, d)
            return loss, flat_grad, t, evals, float(flat_grad.abs().amax().item()) <= tol_grad
        self._add_grad(t, d)
        if last:
            return loss, flat_grad, t, 0, False
        with ember.enable_grad():
            loss = float(closure())
        flat_grad = self._gather_flat_grad()
        return loss, flat_grad, t, 1, float(flat_grad.abs().amax().item()) <= tol_grad
