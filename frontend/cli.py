"""The ``ember`` command line: ``ember demo`` (train, compile, inspect, export) and the tool subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    from ember.demo import run_demo

    return run_demo(epochs=args.epochs, quick=args.quick)


def _load_model(spec: str) -> object:
    """``file.py:factory`` (the factory is called with no arguments) or a vision-zoo model name."""
    import importlib.util
    import os

    path, sep, factory = spec.rpartition(":")
    if sep and path.endswith(".py"):
        if not os.path.isfile(path):
            raise SystemExit(f"ember inspect: no such file: {path}")
        module_spec = importlib.util.spec_from_file_location("_ember_inspect_target", path)
        if module_spec is None or module_spec.loader is None:
            raise SystemExit(f"ember inspect: cannot load {path}")
        mod = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(mod)
        if not callable(getattr(mod, factory, None)):
            raise SystemExit(f"ember inspect: {path} has no callable {factory!r}")
        return getattr(mod, factory)()
    try:
        from ember.vision import models
    except ImportError:
        raise SystemExit(f"ember inspect: {spec!r} is not file.py:factory and the vision zoo is not"
                         " available") from None
    if not callable(getattr(models, spec, None)):
        raise SystemExit(f"ember inspect: no model {spec!r} in ember.vision.models; or give file.py:factory")
    return getattr(models, spec)()


def _parse_size(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input size must look like 1x3x32x32, got {text!r}") from None
    if any(d < 0 for d in dims):
        raise argparse.ArgumentTypeError(f"input sizes must be non-negative, got {text!r}")
    return dims


def _inspect(args: argparse.Namespace) -> int:
    """Trace a model on random inputs of the given sizes and show its graph."""
    import ember

    model = _load_model(args.model)
    if hasattr(model, "eval"):
        model.eval()
    ember.manual_seed(0)
    inputs = [ember.randn(*size) for size in (args.input or [])]
    if args.html or args.bisect:
        return _inspect_compiled(args, model, inputs)
    graph = ember.trace(model, *inputs)
    render = {"text": str, "dot": lambda g: g.to_dot(), "svg": lambda g: g.to_svg(),
              "table": lambda g: g.table() + "\n"}[args.format]
    try:
        out = render(graph)
    except ember.CompileError as e:
        print(f"ember inspect: {e}", file=sys.stderr)
        return 2
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(out)
    else:
        sys.stdout.write(out)
    return 0


def _inspect_compiled(args: argparse.Namespace, model: object, inputs: list) -> int:
    """``--html``: write the compile report; ``--bisect``: check every kernel against the float64
    interpreter and name the first one over tolerance (exit status 1 when there is one)."""
    import ember

    compiled = ember.compile(model)
    try:
        with ember.no_grad():
            if args.html:
                path = compiled.report(args.html, *inputs)
                print(f"wrote the compile report to {path}")
            if args.bisect:
                report = compiled.bisect(*inputs)
                print(report)
                return 0 if report.ok else 1
    except ember.EmberError as e:
        print(f"ember inspect: {e}", file=sys.stderr)
        return 2
    return 0


def _export(args: argparse.Namespace) -> int:
    """Export a model (in eval mode, for random inputs of the given sizes) as a package and header."""
    import os

    import ember

    model = _load_model(args.model)
    if hasattr(model, "eval"):
        model.eval()
    if not args.input:
        print("ember export: give the size of each input with --input, e.g. --input 1x3x224x224",
              file=sys.stderr)
        return 2
    ember.manual_seed(0)
    inputs = tuple(ember.randn(*size) for size in args.input)
    try:
        path = ember.export(model, inputs, args.output, name=args.name)
    except ember.EmberError as e:
        print(f"ember export: {e}", file=sys.stderr)
        return 2
    header = os.path.splitext(path)[0] + ".h"
    print(f"exported {path} ({os.path.getsize(path)} bytes) and its C header {header}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="ember: a deep-learning framework with a compiler")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a model on generated digits, then compile and export it")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo's own)")
    demo.add_argument("--quick", action="store_true", help="a few seconds' run, for smoke tests")
    demo.set_defaults(func=_demo)
    inspect = sub.add_parser("inspect", help="trace a model and show its graph (IR text, DOT, SVG, table)")
    inspect.add_argument("model", help="file.py:factory (a function returning the model) or a zoo model name")
    inspect.add_argument("--input", action="append", type=_parse_size, metavar="1x3x32x32",
                         help="size of one input (repeat for several inputs)")
    inspect.add_argument("--format", choices=("text", "dot", "svg", "table"), default="text")
    inspect.add_argument("--output", "-o", default=None, help="write to this file instead of stdout")
    inspect.add_argument("--html", default=None, metavar="report.html",
                         help="compile the model and write the compile report (one self-contained HTML page)")
    inspect.add_argument("--bisect", action="store_true",
                         help="compile the model and check every kernel against the float64 interpreter; "
                              "name the first kernel over tolerance and the pass that formed it (exit status 1)")
    inspect.set_defaults(func=_inspect)
    export = sub.add_parser("export", help="compile a model ahead of time into one shared library + C header")
    export.add_argument("model", help="file.py:factory (a function returning the model) or a zoo model name")
    export.add_argument("--input", action="append", type=_parse_size, metavar="1x3x32x32",
                        help="size of one float32 input (repeat for several inputs)")
    export.add_argument("--output", "-o", required=True, help="path of the package to write (e.g. model.so)")
    export.add_argument("--name", default=None,
                        help="model name recorded in the package (default: the model's class name)")
    export.set_defaults(func=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
