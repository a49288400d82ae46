"""The ``ember`` command line: ``ember demo`` (train, compile, inspect, export) and the tool subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    from ember.demo import run_demo

    return run_demo(epochs=args.epochs, quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="ember: a deep-learning framework with a compiler")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a model on generated digits, then compile and export it")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo's own)")
    demo.add_argument("--quick", action="store_true", help="a few seconds' run, for smoke tests")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
