"""Parses the text IR written by ``printer.print_graph`` back into a ``Graph``.

``parse(print_graph(g))`` is structurally equal to ``g``. Any malformed text raises ``ParseError`` with
the line and column of the offending token, never another exception: the text may come from a file a
user edited by hand. The parser checks syntax and names (every value defined once, before use; ops exist
in the registry); ``verify`` checks types and attributes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
from ember.compiler import dtypes as _dt
from ember.compiler.ir.graph import INPUT_KINDS, Graph, Node, Value
from ember.compiler.ops.registry import REGISTRY, TensorType
from ember.runtime.errors import ParseError

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+|//[^\n]*)
  | (?P<nl>\n)
  | (?P<float>-?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)|-inf\b)
  | (?P<int>-?\d+)
  | (?P<value>%(?:[A-Za-z0-9_.]+|"(?:[^"\\\n]|\\.)*"))
  | (?P<sym>@(?:[A-Za-z0-9_.]+|"(?:[^"\\\n]|\\.)*"))
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[()\[\]{}<>,:=])
""", re.VERBOSE)

_MAX_DEPTH = 64
_DTYPES = {d.name: d for d in _dt.ALL}
_KEYWORDS = {"true": True, "false": False, "none": None, "inf": math.inf, "nan": math.nan}


class Token:
    __slots__ = ("kind", "text", "line", "col")

    def __init__(self, kind: str, text: str, line: int, col: int) -> None:
        self.kind, self.text, self.line, self.col = kind, text, line, col

    def __repr__(self) -> str:
        return f"{self.kind} {self.text!r}"


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ParseError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
        kind = m.lastgroup or ""
        if kind == "nl":
            line, line_start = line + 1, m.end()
        elif kind != "ws":
            tokens.append(Token(kind, m.group(), line, pos - line_start + 1))
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens


def _unquote(tok: Token, text: str) -> str:
    try:
        out = json.loads(text)
    except ValueError as e:
        raise ParseError(f"bad string literal {text}: {e}", tok.line, tok.col) from None
    if not isinstance(out, str):
        raise ParseError(f"bad string literal {text}", tok.line, tok.col)
    return out


class _Parser:
    def __init__(self, text: str, constants: dict[str, Any] | None) -> None:
        self.toks = tokenize(text)
        self.i = 0
        self.env: dict[tuple[str, str], Value] = {}
        self.given_constants = constants or {}
        self.depth = 0

    # ---- token helpers ----------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, msg: str, tok: Token | None = None) -> ParseError:
        t = tok or self.tok
        found = "end of input" if t.kind == "eof" else repr(t.text)
        return ParseError(f"{msg} (found {found})", t.line, t.col)

    def next(self) -> Token:
        t = self.tok
        if t.kind != "eof":
            self.i += 1
        return t

    def at(self, text: str) -> bool:
        t = self.tok
        return t.kind in ("punct", "ident") and t.text == text

    def expect(self, text: str) -> Token:
        if not self.at(text):
            raise self.error(f"expected {text!r}")
        return self.next()

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.next()
            return True
        return False

    def expect_kind(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}")
        return self.next()

    def name_of(self, tok: Token) -> str:
        body = tok.text[1:]
        return _unquote(tok, body) if body.startswith('"') else body

    def key_of(self, tok: Token) -> tuple[str, str]:
        """Numbered results (%3) and named values (%"3", %x) live in separate namespaces."""
        body = tok.text[1:]
        return ("n", body) if body.isdigit() else ("s", self.name_of(tok))

    # ---- types and literals -----------------------------------------------------------------

    def int_of(self, tok: Token) -> int:
        try:
            return int(tok.text)
        except ValueError:  # Python refuses to convert integers of more than 4300 digits
            raise self.error("integer literal too long", tok) from None

    def dtype(self) -> _dt.DType:
        tok = self.expect_kind("ident", "a dtype")
        if tok.text not in _DTYPES:
            raise self.error(f"unknown dtype {tok.text!r}", tok)
        return _DTYPES[tok.text]

    def type(self) -> TensorType:
        dt = self.dtype()
        self.expect("[")
        dims: list[int] = []
        while not self.at("]"):
            tok = self.expect_kind("int", "a dimension size")
            if tok.text.startswith("-"):
                raise self.error("dimension sizes must be non-negative", tok)
            dims.append(self.int_of(tok))
            if not self.at("]"):
                self.expect(",")
        self.next()
        return TensorType(tuple(dims), dt)

    def literal(self) -> Any:
        tok = self.tok
        if tok.kind == "int":
            self.next()
            return self.int_of(tok)
        if tok.kind == "float":
            self.next()
            return float(tok.text)
        if tok.kind == "string":
            self.next()
            return _unquote(tok, tok.text)
        if tok.kind == "ident":
            self.next()
            if tok.text in _KEYWORDS:
                return _KEYWORDS[tok.text]
            if tok.text in _DTYPES:
                return _DTYPES[tok.text]
            raise self.error("expected a literal", tok)
        if self.at("(") or self.at("["):
            return self.sequence(self.literal)
        raise self.error("expected a literal")

    def sequence(self, item: Any) -> Any:
        """``(a, b)``, ``(a,)``, ``()`` as tuples; ``[a, b]`` as lists."""
        opener = self.next()
        close = ")" if opener.text == "(" else "]"
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error(f"nesting deeper than {_MAX_DEPTH} levels", opener)
        items: list[Any] = []
        trailing = False
        while not self.at(close):
            items.append(item())
            trailing = False
            if self.at(close):
                break
            self.expect(",")
            trailing = True
        self.next()
        self.depth -= 1
        if close == "]":
            return items
        if len(items) == 1 and not trailing:
            raise self.error("a one-element tuple needs a trailing comma, as in (x,)", opener)
        return tuple(items)

    # ---- values -----------------------------------------------------------------------------

    def use(self) -> Value:
        tok = self.expect_kind("value", "a value (%name)")
        key = self.key_of(tok)
        if key not in self.env:
            raise self.error(f"use of undefined value {tok.text}", tok)
        return self.env[key]

    def define(self, tok: Token, v: Value) -> None:
        key = self.key_of(tok)
        if key in self.env:
            raise self.error(f"value {tok.text} is defined twice", tok)
        self.env[key] = v

    def operand(self) -> Any:
        if self.tok.kind == "value":
            return self.use()
        tok = self.tok
        v = self.literal()
        if isinstance(v, bool) or isinstance(v, (int, float)):
            return v
        raise self.error("an operand must be a value or a number", tok)

    # ---- graph ------------------------------------------------------------------------------

    def graph(self) -> Graph:
        self.expect("graph")
        name_tok = self.expect_kind("sym", "a graph name (@name)")
        name = self.name_of(name_tok)
        inputs = self.params()
        self.expect("{")
        constants: list[Value] = []
        data: dict[str, Any] = {}
        nodes: list[Node] = []
        while not self.at("return"):
            if self.tok.kind != "value":
                raise self.error("expected a definition (%name = ...) or 'return'")
            self.statement(constants, data, nodes)
        self.next()
        outputs = self.tree()
        self.expect("}")
        if self.tok.kind != "eof":
            raise self.error("unexpected text after the graph")
        return Graph(name, inputs, constants, nodes, outputs, data)

    def params(self) -> list[Value]:
        self.expect("(")
        inputs: list[Value] = []
        while not self.at(")"):
            tok = self.expect_kind("value", "a graph input (%name)")
            self.expect(":")
            ty = self.type()
            kind_tok = self.expect_kind("ident", "an input kind")
            if kind_tok.text not in INPUT_KINDS:
                raise self.error(f"input kind must be one of {', '.join(INPUT_KINDS)}", kind_tok)
            v = Value(ty, kind_tok.text, self.name_of(tok))
            self.define(tok, v)
            inputs.append(v)
            if not self.at(")"):
                self.expect(",")
        self.next()
        return inputs

    def statement(self, constants: list[Value], data: dict[str, Any], nodes: list[Node]) -> None:
        targets = [self.expect_kind("value", "a value")]
        while self.accept(","):
            targets.append(self.expect_kind("value", "a value"))
        self.expect("=")
        if self.at("constant"):
            if len(targets) != 1:
                raise self.error("a constant defines exactly one value", targets[1])
            self.next()
            constants.append(self.constant(targets[0], data))
        else:
            nodes.append(self.node(targets))

    def constant(self, target: Token, data: dict[str, Any]) -> Value:
        literal_tok, values = self.tok, None
        if self.accept("dense"):
            self.expect("<")
            if not self.at("["):
                raise self.error("expected '[' after dense<")
            values = self.sequence(self.literal)
            self.expect(">")
        self.expect(":")
        ty = self.type()
        name = self.name_of(target)
        v = Value(ty, "constant", name)
        self.define(target, v)
        if values is not None:
            data[name] = _dense(values, ty, literal_tok)
        else:
            data[name] = self.given_constants.get(name)
        return v

    def node(self, targets: list[Token]) -> Node:
        op_tok = self.expect_kind("ident", "an op name")
        op = REGISTRY.get(op_tok.text)
        if op is None:
            raise self.error(f"unknown op {op_tok.text!r}", op_tok)
        self.expect("(")
        inputs: list[Any] = []
        while not self.at(")"):
            inputs.append(self.operand())
            if not self.at(")"):
                self.expect(",")
        self.next()
        attrs = self.attributes() if self.at("{") else {}
        self.expect(":")
        types = [self.type()] if not self.at("(") else self.type_list()
        if len(types) != len(targets):
            raise self.error(f"{len(targets)} results but {len(types)} types", op_tok)
        scope, loc = self.location() if self.at("loc") else ("", None)
        node = Node(op, tuple(inputs), attrs, tuple(types), scope, loc)
        for tok, v in zip(targets, node.outputs):
            if not tok.text[1:].isdigit():
                raise self.error("node results are numbered (%0, %1, ...)", tok)
            self.define(tok, v)
        return node

    def type_list(self) -> list[TensorType]:
        self.expect("(")
        types = [self.type()]
        while self.accept(","):
            types.append(self.type())
        self.expect(")")
        return types

    def attributes(self) -> dict[str, Any]:
        self.expect("{")
        attrs: dict[str, Any] = {}
        while not self.at("}"):
            key = self.expect_kind("ident", "an attribute name")
            if key.text in attrs:
                raise self.error(f"attribute {key.text!r} given twice", key)
            self.expect("=")
            attrs[key.text] = self.literal()
            if not self.at("}"):
                self.expect(",")
        self.next()
        return attrs

    def location(self) -> tuple[str, tuple[str, int] | None]:
        start = self.expect("loc")
        self.expect("(")
        fields: dict[str, Any] = {}
        while not self.at(")"):
            key = self.expect_kind("ident", "scope=, file= or line=")
            if key.text not in ("scope", "file", "line") or key.text in fields:
                raise self.error("loc() takes scope=, file= and line=, each at most once", key)
            self.expect("=")
            fields[key.text] = self.literal()
            if not self.at(")"):
                self.expect(",")
        self.next()
        scope, file, line = fields.get("scope", ""), fields.get("file"), fields.get("line")
        if not isinstance(scope, str) or (file is None) != (line is None):
            raise self.error("loc() needs a string scope, and file= and line= together", start)
        if file is None:
            return scope, None
        if not isinstance(file, str) or isinstance(line, bool) or not isinstance(line, int):
            raise self.error("loc(): file= must be a string and line= an int", start)
        return scope, (file, line)

    def tree(self) -> Any:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error(f"output nesting deeper than {_MAX_DEPTH} levels")
        try:
            if self.tok.kind == "value":
                return self.use()
            if self.at("(") or self.at("["):
                return self.sequence(self.tree)
            if self.at("{"):
                return self.dict_tree()
            return self.operand()
        finally:
            self.depth -= 1

    def dict_tree(self) -> dict[str, Any]:
        self.expect("{")
        out: dict[str, Any] = {}
        while not self.at("}"):
            key_tok = self.expect_kind("string", "a string key")
            key = _unquote(key_tok, key_tok.text)
            if key in out:
                raise self.error(f"key {key_tok.text} given twice", key_tok)
            self.expect(":")
            out[key] = self.tree()
            if not self.at("}"):
                self.expect(",")
        self.next()
        return out


def _dense(values: list[Any], ty: TensorType, tok: Token) -> np.ndarray:
    numel = ty.numel
    if len(values) != numel:
        raise ParseError(f"dense<> holds {len(values)} values but {ty.dtype.name}{list(ty.shape)} needs"
                         f" {numel}", tok.line, tok.col)
    cat = ty.dtype.category
    for v in values:
        ok = isinstance(v, bool) if cat == _dt.BOOL else (
            isinstance(v, int) and not isinstance(v, bool) if cat == _dt.INTEGRAL
            else isinstance(v, (int, float)) and not isinstance(v, bool))
        if not ok:
            raise ParseError(f"dense<> value {v!r} does not fit dtype {ty.dtype.name}", tok.line, tok.col)
        if cat == _dt.INTEGRAL:
            info = np.iinfo(ty.dtype.np)
            if not info.min <= v <= info.max:
                raise ParseError(f"dense<> value {v} is out of range for {ty.dtype.name}", tok.line, tok.col)
    with np.errstate(over="ignore"):  # a float64 literal beyond float16/32 range becomes inf, as a cast does
        return np.array(values, dtype=ty.dtype.np).reshape(ty.shape)


def parse(text: str, constants: dict[str, Any] | None = None) -> Graph:
    """Parse IR text. ``constants`` supplies data for constants the text holds by name only.

    >>> text = 'graph @f(\\n  %x: float32[2] input\\n) {\\n  %0 = neg(%x) : float32[2]\\n  return %0\\n}\\n'
    >>> g = parse(text)
    >>> [n.op.name for n in g.nodes]
    ['neg']
    """
    if not isinstance(text, str):
        raise ParseError(f"IR text must be a str, got {type(text).__name__}")
    return _Parser(text, constants).graph()
