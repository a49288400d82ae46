"""Every public name that /work/shared/SEED_API.md lists exists in ember.

SEED_API.md is prose: sections name a namespace (``## Modules (`ember.nn`)``), bullets and paragraphs
list names separated by commas and semicolons, ``a/b`` and ``Conv1d/2d/3d`` are alternatives,
parentheses hold arguments or notes, ``label:`` prefixes are categories or sub-namespaces. The parser
below follows those rules; any fragment it cannot read as a name must appear in ``PROSE`` (what it means)
or the test fails, so a new line in SEED_API.md cannot be skipped silently. Each parsed name is also
checked to exist in torch 2.13 at the same place, which keeps the parser honest.

Names are resolved PyTorch's way: a name in a namespace is looked up there when torch has it there,
otherwise on the Tensor class (``nelement``, ``requires_grad_``, ``.grad``). For the ``ember`` namespace
the Tensor-method twin and the in-place form (``abs`` -> ``Tensor.abs`` and ``Tensor.abs_``) are
required wherever torch.Tensor has them, which is what "in-place forms (`abs_`, `add_`, `zero_`, ...)"
asks for.
"""

from __future__ import annotations

import re
from pathlib import Path

import ember
import pytest
import torch
import torch.cuda.comm  # noqa: F401  (a submodule torch.cuda does not import itself)

SEED = Path("/work/shared/SEED_API.md")
if not SEED.exists():  # the repository's copy, when the shared folder is not mounted
    SEED = Path(__file__).resolve().parents[2] / "docs" / "SEED_API.md"

# Fragments that are descriptions, not names: fragment -> names (relative to the section's namespace;
# "Tensor.x" is a Tensor attribute) or a reason why nothing is checked by name.
PROSE: dict[str, list[str] | str] = {
    "basic and advanced indexing": ["Tensor.__getitem__"],
    "setitem": ["Tensor.__setitem__"],
    "in-place forms with autograd's version checks": ["Tensor.abs_", "Tensor.add_", "Tensor.zero_"],
    "dtypes float16/float32/float64/int32/int64/bool": ["float16", "float32", "float64", "int32", "int64",
                                                        "bool"],
    "*_like variants": "expanded below: the *_like twin of every creation name torch has one for",
    "leaf semantics": "behaviour (tests/frontend/test_autograd.py)",
    "gradient accumulation": "behaviour (tests/frontend/test_autograd.py)",
    "retain_graph errors": "behaviour (tests/frontend/test_autograd.py)",
    "repr matching PyTorch's": ["__repr__"],
    "the functional twin of every layer above": "expanded below: F.<snake_case> of every listed layer",
    "DataParallel over the GPUs present": ["DataParallel"],
    "Optimizer base": ["Optimizer"],
    "and the comm helpers broadcast": ["comm.broadcast"],
}
# After "and the comm helpers broadcast", the rest of the list is in ember.cuda.comm.
PROSE_SWITCH = {"and the comm helpers broadcast": "comm"}

# "label:" prefixes: category labels (ignored) and sub-namespaces.
CATEGORIES = {
    "type checks and settings", "creation", "indexing / joining", "elementwise math", "reductions",
    "comparison", "linear algebra", "serialization", "containers", "convolution", "pooling",
    "activations", "normalization", "recurrent", "vision", "losses",
}
SUBNAMESPACES = {
    "nn.init": "init", "nn.utils": "utils", "nn.functional": "functional", "lr_scheduler": "lr_scheduler",
    "datasets reading the standard on-disk formats from a local folder": "datasets", "models": "models",
    "transforms": "transforms", "utils": "utils", "Module with": "Module",
}
# Word prefixes that put one name in a sub-namespace ("utils.rnn pack_padded_sequence").
PREFIX_WORDS = {"utils.rnn": "utils.rnn"}

SKIPPED_SECTIONS = {
    "Training-loop idioms from the notes that must work unchanged":
        "code idioms built from names listed above (to, zero_grad, backward, step, argmax, state_dict...)",
}
# Listed in SEED_API.md but gone from torch 2.13 (ember keeps them; checked on ember only).
TORCH_ABSENT = {"eig": "torch.eig was removed (torch.linalg.eig); SEED_API lists it, eager only"}
# Vision has no torch counterpart installed (torchvision): names are checked on ember only.
NO_TORCH_NAMESPACES = {"ember.vision"}


def _split_top(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    return parts + ["".join(cur)]


def _strip_parens(text: str) -> tuple[str, list[str]]:
    """Remove (possibly nested) parenthesised notes; return the text and the top-level notes."""
    out, notes, depth, cur = [], [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
            if depth == 1:
                cur = []
                continue
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0:
                notes.append("".join(cur))
                continue
        (cur if depth else out).append(ch)
    return " ".join("".join(out).split()), notes


def _expand(word: str) -> list[str]:
    """``Conv1d/2d/3d`` -> three names; ``max/min`` -> two; ``vgg11/13`` -> vgg11, vgg13."""
    parts = [p.strip() for p in word.split("/") if p.strip()]
    head = parts[0]
    names = [head]
    for part in parts[1:]:
        m = re.fullmatch(r"(\d+d?)", part)
        names.append(re.sub(r"\d+d?$", part, head) if m else part)
    return names


def _sections(text: str) -> list[tuple[str, str, list[str]]]:
    """(title, namespace, chunks): bullets (with continuation lines) and paragraphs of each section."""
    result = []
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        m = re.search(r"\(`(ember[\w.]*)`", title)
        ns = m.group(1) if m else None
        items, cur = [], []
        for line in body.splitlines():
            if line.startswith("- ") or not line.strip():
                if cur:
                    items.append(" ".join(cur))
                cur = [line[2:]] if line.startswith("- ") else []
            else:
                cur.append(line.strip())
        if cur:
            items.append(" ".join(cur))
        result.append((re.sub(r"\s*\(`.*$", "", title).strip(), ns, items))
    return result


def _parse_chunk(chunk: str, ns: str, names: list[tuple[str, str]], unknown: list[str]) -> None:
    frags = _split_top(chunk.replace("`", ""), ",")
    sub = None
    head, _ = _strip_parens(frags[0])
    if ":" in head:  # "label: first, second, ..."
        label, _, rest = frags[0].partition(":")
        label = _strip_parens(label)[0]
        frags[0] = rest
        if label in SUBNAMESPACES:
            sub = SUBNAMESPACES[label]
        elif label not in CATEGORIES:
            unknown.append(f"label {label!r}")
    created: list[str] = []
    for raw in frags:
        frag, notes = _strip_parens(raw)
        frag = frag.strip().rstrip(".")
        suffixes = [m.group(1) for n in notes for m in [re.fullmatch(r"and (_\w+)", n.strip())] if m]
        if not frag:
            continue
        if frag in PROSE:
            found = PROSE[frag]
            for n in found if isinstance(found, list) else []:
                names.append((ns, n if sub is None or n.startswith("Tensor.") else f"{sub}.{n}"))
            sub = PROSE_SWITCH.get(frag, sub)
            if frag == "*_like variants":
                names.extend((ns, n + "_like") for n in created if hasattr(torch, n + "_like"))
            continue
        words = frag.split()
        if len(words) > 1 and words[0] in PREFIX_WORDS:
            prefix, words = PREFIX_WORDS[words[0]], words[1:]
        else:
            prefix = sub
        if all(w.startswith(".") for w in words):  # `.float() .double()` / `.shape`
            names.extend((ns, "Tensor" + w) for w in words)
            continue
        joined = "".join(words)  # "Dropout / Dropout2d" -> "Dropout/Dropout2d"
        if not re.fullmatch(r"[\w.*/]+", joined):
            unknown.append(frag)
            continue
        for n in _expand(joined):
            for full in [n] + [n + s for s in suffixes]:
                created.append(full)
                names.append((ns, f"{prefix}.{full}" if prefix else full))


def seed_names() -> tuple[list[tuple[str, str]], list[str]]:
    names: list[tuple[str, str]] = []
    unknown: list[str] = []
    for title, ns, items in _sections(SEED.read_text()):
        if title in SKIPPED_SECTIONS:
            continue
        if ns is None:
            unknown.append(f"section {title!r} names no namespace")
            continue
        for item in items:
            for chunk in _split_top(item, ";"):
                _parse_chunk(chunk, ns, names, unknown)
    return names, unknown


def _lookup(root: object, dotted: str) -> object:
    obj = root
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _has(root: object, dotted: str) -> bool:
    try:
        _lookup(root, dotted)
    except AttributeError:
        return False
    return True


def _resolve(ns: str, name: str) -> list[str]:
    """The ember paths ``name`` listed under ``ns`` must have, decided by where torch has it."""
    if name.startswith("Tensor.") or ns in NO_TORCH_NAMESPACES:
        return [f"{ns}.{name}" if not name.startswith("Tensor.") else f"ember.{name}"]
    if name in TORCH_ABSENT:
        return [f"{ns}.{name}"]
    torch_ns = "torch" + ns[len("ember"):]
    if _has(torch, f"{torch_ns[6:]}.{name}".lstrip(".")):
        paths = [f"{ns}.{name}"]
        if ns == "ember" and hasattr(torch.Tensor, name):
            paths.append(f"ember.Tensor.{name}")
        if ns == "ember" and hasattr(torch.Tensor, name + "_") and callable(getattr(torch, name)):
            paths.append(f"ember.Tensor.{name}_")
        return paths
    if "." not in name and hasattr(torch.Tensor, name):
        return [f"ember.Tensor.{name}"]
    raise AssertionError(f"SEED_API name {ns}.{name} exists neither in {torch_ns} nor on torch.Tensor")


def _functional_twins(names: list[tuple[str, str]]) -> list[str]:
    """F.<snake_case> twins of the listed nn layers, where torch.nn.functional has one by that rule
    (``LeakyReLU`` -> ``leaky_relu``, ``BatchNorm2d`` -> ``batch_norm``, ``NLLLoss`` -> ``nll_loss``,
    ``KLDivLoss`` -> ``kl_div``); layers whose twin has another name (``BCELoss``) are not checked here."""
    twins = set()
    for ns, name in names:
        if ns != "ember.nn" or "." in name or not name[:1].isupper():
            continue
        word = name.replace("ReLU", "Relu").replace("LU", "Lu")
        snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", word).lower()
        bases = [snake, re.sub(r"\dd$", "", snake), re.sub(r"_loss$", "", snake)]
        for cand in bases + [b.replace("_", "") for b in bases]:
            if hasattr(torch.nn.functional, cand):
                twins.add(f"ember.nn.functional.{cand}")
                break
    return sorted(twins)


NAMES, UNKNOWN = seed_names()
PATHS = sorted({p for ns, n in NAMES for p in _resolve(ns, n)} | set(_functional_twins(NAMES)))


def test_every_fragment_is_understood() -> None:
    assert UNKNOWN == [], f"SEED_API.md fragments the parser cannot read (add them to PROSE): {UNKNOWN}"
    assert len(NAMES) > 300  # the checklist lists a few hundred names; far fewer means the parse broke


def test_parser_reads_known_entries() -> None:
    expected = {("ember", "set_default_dtype"), ("ember.nn", "ConvTranspose3d"), ("ember", "argmin"),
                ("ember.nn", "utils.rnn.PackedSequence"), ("ember.vision", "models.vgg19_bn"),
                ("ember.cuda", "comm.gather"), ("ember.optim", "lr_scheduler.ReduceLROnPlateau"),
                ("ember.nn", "Module.register_forward_pre_hook"), ("ember", "Tensor.shape"),
                ("ember.nn", "init.orthogonal_"), ("ember", "zeros_like")}
    assert expected <= set(NAMES), expected - set(NAMES)


@pytest.mark.parametrize("path", PATHS)
def test_seed_name_exists(path: str) -> None:
    assert _has(ember, path.removeprefix("ember.")), f"{path} is listed in SEED_API.md but missing"
