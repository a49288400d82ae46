"""Every loss of ``torch.nn.functional``, composed from registry ops, with reduction 'none' | 'mean' |
'sum' and PyTorch's conventions (weighted means divide by the total weight; ignored targets count for
nothing; class-probability targets in cross_entropy)."""

from __future__ import annotations

import warnings
from typing import Any

from ember.compiler.ops import REGISTRY
from ember.dispatch import apply
from ember.nn.functional.activation import log_softmax, logsigmoid, relu
from ember.runtime.errors import ArgumentError, DTypeError, ShapeError
from ember.tensor import Tensor

_op = REGISTRY.__getitem__


def _reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    """Map the legacy size_average/reduce flags onto ``reduction``, as PyTorch does."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn("size_average and reduce args will be deprecated, please use reduction='"
                  f"{_legacy(size_average, reduce)}' instead.", UserWarning, stacklevel=3)
    return _legacy(size_average, reduce)


def _legacy(size_average: Any, reduce: Any) -> str:
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ArgumentError(f"{reduction} is not a valid value for reduction")


def _check_sizes(name: str, input: Tensor, target: Tensor) -> None:
    if tuple(target.shape) != tuple(input.shape):
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). This"
            " will likely lead to incorrect results due to broadcasting. Please ensure they have the same"
            " size.", UserWarning, stacklevel=3,
        )


# ---- regression ------------------------------------------------------------------------------------


def l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
            reduction: str = "mean") -> Tensor:
    """Mean (or sum) absolute error."""
    _check_sizes("l1_loss", input, target)
    return _reduce((input - target).abs(), _reduction(size_average, reduce, reduction))


def mse_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
             reduction: str = "mean") -> Tensor:
    """Mean (or sum) squared error."""
    _check_sizes("mse_loss", input, target)
    d = input - target
    return _reduce(d * d, _reduction(size_average, reduce, reduction))


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """Quadratic below ``beta``, linear above: 0.5 d^2 / beta if |d| < beta else |d| - beta / 2."""
    _check_sizes("smooth_l1_loss", input, target)
    if beta < 0:
        raise ArgumentError(f"smooth_l1_loss does not support negative values for beta, got {beta}")
    d = (input - target).abs()
    loss = d if beta == 0.0 else (d * d * (0.5 / beta)).where(d < beta, d - 0.5 * beta)
    return _reduce(loss, _reduction(size_average, reduce, reduction))


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """Quadratic below ``delta``, linear (slope delta) above."""
    _check_sizes("huber_loss", input, target)
    d = (input - target).abs()
    loss = (d * d * 0.5).where(d < delta, (d - 0.5 * delta) * delta)
    return _reduce(loss, reduction)


# ---- probabilistic --------------------------------------------------------------------------------


def kl_div(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL(target || exp(input)) pointwise: input holds log-probabilities; 'batchmean' divides the sum by
    the batch size (the mathematically right mean)."""
    reduction = _reduction(size_average, reduce, reduction)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        positive = target > 0
        safe = target.where(positive, 1.0)
        loss = (target * safe.log()).where(positive, 0.0) - target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


def _weighted(loss: Tensor, weight: Tensor | None) -> Tensor:
    return loss if weight is None else loss * weight


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """-w (t log x + (1 - t) log(1 - x)), each log clamped at -100 as PyTorch does."""
    if tuple(target.shape) != tuple(input.shape):
        raise ArgumentError(
            f"Using a target size ({target.shape}) that is different to the input size ({input.shape}) is"
            " deprecated. Please ensure they have the same size."
        )
    loss = apply(_op("binary_cross_entropy"), (input, target), {})
    return _reduce(_weighted(loss, weight), _reduction(size_average, reduce, reduction))


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """BCE on sigmoid(input), computed stably as (1 - t) x - lw * log_sigmoid(x) with
    lw = 1 + (pos_weight - 1) t."""
    if tuple(target.shape) != tuple(input.shape):
        raise ArgumentError(
            f"Target size ({target.shape}) must be the same as input size ({input.shape})"
        )
    log_sig = logsigmoid(input)
    if pos_weight is None:
        loss = (1.0 - target) * input - log_sig
    else:
        loss = (1.0 - target) * input - (1.0 + (pos_weight - 1.0) * target) * log_sig
    return _reduce(_weighted(loss, weight), _reduction(size_average, reduce, reduction))


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,
                     size_average: Any = None, eps: float = 1e-8, reduce: Any = None,
                     reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of a Poisson target (Stirling term when ``full``)."""
    loss = input.exp() - target * input if log_input else input - target * (input + eps).log()
    if full:
        safe = target.where(target > 1, 2.0)
        stirling = safe * safe.log() - safe + 0.5 * (safe * 6.283185307179586).log()
        loss = loss + stirling.where(target > 1, 0.0)
    return _reduce(loss, _reduction(size_average, reduce, reduction))


def gaussian_nll_loss(input: Tensor, target: Tensor, var: Tensor, full: bool = False, eps: float = 1e-6,
                      reduction: str = "mean") -> Tensor:
    """0.5 (log var + (input - target)^2 / var), var clamped at eps without gradient below it."""
    from ember.autograd import no_grad

    var = var.clone()
    with no_grad():
        var.clamp_(min=eps)
    d = input - target
    loss = 0.5 * (var.log() + d * d / var)
    if full:
        loss = loss + 0.9189385332046727
    return _reduce(loss, reduction)


# ---- margins ---------------------------------------------------------------------------------------


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                        size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """max(0, -y (x1 - x2) + margin)."""
    if input1.ndim != input2.ndim or input1.ndim != target.ndim:
        raise ShapeError(
            f"margin_ranking_loss : All input tensors should have same dimension but got sizes: input1:"
            f" {input1.shape}, input2: {input2.shape}, target: {target.shape} "
        )
    loss = (-target * (input1 - input2) + margin).clamp(min=0.0)
    return _reduce(loss, _reduction(size_average, reduce, reduction))


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, size_average: Any = None,
                         reduce: Any = None, reduction: str = "mean") -> Tensor:
    """x where y == 1, max(0, margin - x) where y == -1."""
    margin_part = (margin - input).clamp(min=0.0).where(target != 1, 0.0)
    self_part = input.where(target != -1, 0.0)
    return _reduce(margin_part + self_part, _reduction(size_average, reduce, reduction))


def soft_margin_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
                     reduction: str = "mean") -> Tensor:
    """log(1 + exp(-y x)), computed as -log_sigmoid(y x)."""
    return _reduce(-logsigmoid(target * input), _reduction(size_average, reduce, reduction))


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                          size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """1 - cos(x1, x2) where y == 1, max(0, cos(x1, x2) - margin) where y == -1."""
    eps = 1e-12
    dim = input1.ndim - 1
    prod = (input1 * input2).sum(dim)
    mag = ((input1 * input1).sum(dim) + eps) * ((input2 * input2).sum(dim) + eps)
    cos = prod / mag.sqrt()
    pos = (1.0 - cos).where(target == 1, 0.0)
    neg = (cos - margin).clamp(min=0.0).where(target == -1, 0.0)
    return _reduce(pos + neg, _reduction(size_average, reduce, reduction))


def _class_mask(target: Tensor, num_classes: int, dtype: Any) -> Tensor:
    """(..., C) float mask with a one at each target's class."""
    return apply(_op("one_hot"), (target,), {"num_classes": num_classes}).to(dtype)


def multi_margin_loss(input: Tensor, target: Tensor, p: int = 1, margin: float = 1.0,
                      weight: Tensor | None = None, size_average: Any = None, reduce: Any = None,
                      reduction: str = "mean") -> Tensor:
    """sum_{i != y} max(0, margin - x[y] + x[i])^p / C, each term scaled by weight[y]."""
    if p not in (1, 2):
        raise ArgumentError(f"multi_margin_loss: only p == 1 and p == 2 supported, got {p}")
    x = input if input.ndim == 2 else input.reshape(1, -1)
    t = target.reshape(-1)
    c = x.shape[1]
    onehot = _class_mask(t, c, x.dtype)
    x_y = (x * onehot).sum(1, keepdim=True)
    z = relu(margin - x_y + x)
    if p == 2:
        z = z * z
    if weight is not None:
        z = z * (onehot * weight).sum(1, keepdim=True)
    loss = (z * (1.0 - onehot)).sum(1) / c
    if input.ndim < 2:
        loss = loss.reshape(())
    return _reduce(loss, _reduction(size_average, reduce, reduction))


def multilabel_margin_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
                           reduction: str = "mean") -> Tensor:
    """For each sample, the targets are the leading non-negative entries of ``target`` (up to the first
    -1); loss = sum_{j target, i not target} max(0, 1 - (x[j] - x[i])) / C."""
    x = input if input.ndim == 2 else input.reshape(1, -1)
    t = target if target.ndim == 2 else target.reshape(1, -1)
    if tuple(t.shape) != tuple(x.shape):
        raise ShapeError(f"multilabel_margin_loss: inconsistent target size: {target.shape} for input of"
                         f" size: {input.shape}")
    c = x.shape[1]
    valid = ((t < 0).to(x.dtype).cumsum(1) == 0).to(x.dtype)           # (N, J): before the first -1
    onehots = _class_mask(t.clamp(min=0), c, x.dtype) * valid.unsqueeze(2)  # (N, J, C)
    is_target = (onehots.sum(1) > 0).to(x.dtype)                           # (N, C)
    x_j = (onehots * x.unsqueeze(1)).sum(2)                                # (N, J)
    hinge = relu(1.0 - x_j.unsqueeze(2) + x.unsqueeze(1))                  # (N, J, C)
    loss = (hinge * (1.0 - is_target).unsqueeze(1) * valid.unsqueeze(2)).sum((1, 2)) / c
    if input.ndim < 2:
        loss = loss.reshape(())
    return _reduce(loss, _reduction(size_average, reduce, reduction))


def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                size_average: Any = None, reduce: Any = None,
                                reduction: str = "mean") -> Tensor:
    """Mean over classes of the binary logistic loss of each class."""
    loss = -(target * logsigmoid(input) + (1.0 - target) * logsigmoid(-input))
    loss = _weighted(loss, weight)
    loss = loss.sum(input.ndim - 1) / input.shape[-1]
    return _reduce(loss, _reduction(size_average, reduce, reduction))


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0,
                        p: float = 2.0, eps: float = 1e-6, swap: bool = False, size_average: Any = None,
                        reduce: Any = None, reduction: str = "mean") -> Tensor:
    """max(0, d(a, p) - d(a, n) + margin) with pairwise distances."""
    from ember.nn.functional.distance import pairwise_distance

    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_swap = pairwise_distance(positive, negative, p, eps)
        d_neg = d_neg.where(d_neg < d_swap, d_swap)
    loss = (margin + d_pos - d_neg).clamp(min=0.0)
    return _reduce(loss, _reduction(size_average, reduce, reduction))


# ---- classification --------------------------------------------------------------------------------


def _class_layout(name: str, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Bring input to (..., C) (classes last) and check the target's shape: (N, C, d...) pairs with
    (N, d...); a 1-d input is a single sample."""
    if input.ndim == 0:
        raise ShapeError(f"{name}: input tensor should be 1D or more, got a 0-d input")
    if input.ndim == 1:
        if target.ndim != 0:
            raise ShapeError(f"{name}: for a 1-d input of {input.shape[0]} classes the target must be 0-d,"
                             f" got target of shape {list(target.shape)}")
        return input, target, True
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        if target.ndim >= 1 and target.shape[0] != input.shape[0]:
            raise ShapeError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size"
                             f" ({target.shape[0]}).")
        raise ShapeError(f"{name}: Expected target size {list(expected)}, got {list(target.shape)}"
                         f" (input size {list(input.shape)})")
    return (input.movedim(1, -1) if input.ndim > 2 else input), target, False


def _nll_parts(name: str, logp: Tensor, target: Tensor, weight: Tensor | None,
               ignore_index: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample (picked log-probability, sample weight, one-hot mask); ignored samples weigh 0."""
    if target.dtype.is_floating_point or target.dtype.name == "bool":
        raise DTypeError(f"{name}: expected scalar type Long but found {target.dtype} (target must hold class"
                         " indices)")
    c = logp.shape[-1]
    if weight is not None and tuple(weight.shape) != (c,):
        raise ShapeError(f"{name}: weight tensor should be defined either for all {c} classes or no classes"
                         f" but got weight tensor of shape: {list(weight.shape)}")
    valid = target != ignore_index
    onehot = _class_mask(target.where(valid, 0), c, logp.dtype)
    picked = (logp * onehot).sum(-1)
    w = valid.to(logp.dtype)
    if weight is not None:
        w = w * (onehot * weight.to(logp.dtype)).sum(-1)
    return picked, w, onehot


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: Any = None,
             ignore_index: int = -100, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """-input[target] per sample (input holds log-probabilities, classes in dim 1), weighted; the mean
    divides by the total weight of the non-ignored samples."""
    reduction = _reduction(size_average, reduce, reduction)
    logp, tgt, _ = _class_layout("nll_loss", input, target)
    picked, w, _ = _nll_parts("nll_loss", logp, tgt, weight, ignore_index)
    loss = -picked * w
    if reduction == "mean":
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)


def _prob_target_ce(logp: Tensor, target: Tensor, weight: Tensor | None, reduction: str,
                    label_smoothing: float) -> Tensor:
    c = logp.shape[-1]
    if label_smoothing > 0:
        target = target * (1.0 - label_smoothing) + label_smoothing / c
    terms = logp * target
    if weight is not None:
        terms = terms * weight
    loss = -terms.sum(-1)
    if reduction == "mean":
        return loss.sum() / max(loss.numel(), 1) if loss.ndim else loss
    return _reduce(loss, reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: Any = None,
                  ignore_index: int = -100, reduce: Any = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over dim 1 then the negative log-likelihood of the target classes (or, for a
    floating-point target of the input's shape, of the class probabilities); ``label_smoothing`` mixes
    in the uniform distribution."""
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ArgumentError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    logp = log_softmax(input, 1 if input.ndim > 1 else 0)
    if target.dtype.is_floating_point:
        if tuple(target.shape) != tuple(input.shape):
            raise ShapeError(f"cross_entropy: for class-probability targets the target must have the input's"
                             f" shape {list(input.shape)}, got {list(target.shape)}")
        lp = logp.movedim(1, -1) if input.ndim > 2 else logp
        tg = target.movedim(1, -1) if input.ndim > 2 else target
        return _prob_target_ce(lp, tg, weight, reduction, label_smoothing)
    lp, tgt, _ = _class_layout("cross_entropy", logp, target)
    picked, w, _ = _nll_parts("cross_entropy", lp, tgt, weight, ignore_index)
    loss = -picked * w
    if label_smoothing > 0:
        wl = lp if weight is None else lp * weight.to(lp.dtype)
        smooth = -(wl.sum(-1)) * (tgt != ignore_index).to(lp.dtype)
        loss = loss * (1.0 - label_smoothing) + smooth * (label_smoothing / lp.shape[-1])
    if reduction == "mean":
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)


__all__ = ["l1_loss", "mse_loss", "smooth_l1_loss", "huber_loss", "kl_div", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "poisson_nll_loss", "gaussian_nll_loss", "margin_ranking_loss",
           "hinge_embedding_loss", "soft_margin_loss", "cosine_embedding_loss", "multi_margin_loss",
           "multilabel_margin_loss", "multilabel_soft_margin_loss", "triplet_margin_loss", "nll_loss",
           "cross_entropy"]
