"""A small evaluator for the HCL2 expressions and string templates our Nomad jobs use.

python-hcl2 parses a job file but evaluates nothing: ``count = var.x + 1`` comes back as the
text ``"${var.x + 1}"``. Nomad evaluates these at submission time (``nomad job run -var``),
before any Consul-template ``{{ ... }}`` text is looked at on the client. This module does
that first step, for the subset of HCL the project's jobs use, so that the job check and the
tests see the job the way Nomad's parser would:

* literals (numbers, strings with ``${...}`` interpolation, ``true``/``false``/``null``,
  lists, objects), references (``var.x``, ``local.y``, ``group.key``, ``group.value.node``),
  index and attribute access, arithmetic, comparison, logic, ``cond ? a : b``;
* ``[for k, v in coll : expr if cond]`` list comprehensions;
* functions ``length``, ``join``, ``contains``, ``range``, ``min``, ``max``, ``tostring``,
  ``tonumber``, ``lower``, ``upper``, ``format`` (``%s``/``%d`` only);
* string templates with ``${...}``, ``%{ for }``/``%{ endfor }``, ``%{ if }``/``%{ else }``/
  ``%{ endif }``, the ``~`` whitespace strip markers, and the ``$${`` / ``%%{`` escapes.

Anything else raises :class:`HclEvalError` naming the expression, so an unsupported
construct is reported instead of silently rendered wrong. Reference:
https://developer.hashicorp.com/nomad/docs/job-specification/hcl2/expressions
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class HclEvalError(ValueError):
    """An expression uses something this evaluator does not support, or is invalid."""


class RuntimeReference(HclEvalError):
    """The expression names a value only the Nomad client knows (``node.*``, ``attr.*``,
    ``meta.*``, ``env``, ``NOMAD_*``): Nomad keeps such ``${...}`` text for run time."""


RUNTIME_ROOTS = frozenset({"node", "attr", "meta", "env", "device", "unique"})


def is_runtime_name(name: str) -> bool:
    """Names Nomad's HCL2 parser leaves unevaluated for the client to interpolate."""
    return name in RUNTIME_ROOTS or name.startswith("NOMAD_")


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|&&|\|\||=>|[-+*/%<>!?:.,()\[\]{}=])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokenize(expr: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN_RE.match(expr, pos)
        if not match:
            raise HclEvalError(f"cannot read expression at {expr[pos:pos + 20]!r} in {expr!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, match.group()))
    tokens.append(_Tok("end", ""))
    return tokens


def _fmt(spec: str, *args: Any) -> str:
    out = spec
    for arg in args:
        out = re.sub(r"%[sd]", lambda _m, a=arg: _to_str(a), out, count=1)
    return out


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "length": lambda x: len(x),
    "join": lambda sep, xs: sep.join(_to_str(x) for x in xs),
    "contains": lambda xs, x: x in xs,
    "range": lambda *a: list(range(*(int(v) for v in a))),
    "min": lambda *a: min(a),
    "max": lambda *a: max(a),
    "tostring": lambda x: _to_str(x),
    "tonumber": lambda x: int(x) if re.fullmatch(r"-?\d+", str(x)) else float(x),
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "format": _fmt,
}


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None:
        return ""
    if isinstance(value, list | dict):
        raise HclEvalError(f"cannot interpolate a collection into a string: {value!r}")
    return str(value)


class _Parser:
    """Recursive descent over the token list; evaluates while parsing (``skip`` for lazy)."""

    def __init__(self, expr: str, scope: Mapping[str, Any]) -> None:
        self.expr = expr
        self.toks = _tokenize(expr)
        self.pos = 0
        self.scope = scope

    # -- helpers -----------------------------------------------------------------------
    def peek(self, offset: int = 0) -> _Tok:
        return self.toks[min(self.pos + offset, len(self.toks) - 1)]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.toks[self.pos]
        if text is not None and tok.text != text:
            raise HclEvalError(f"expected {text!r} but found {tok.text!r} in {self.expr!r}")
        self.pos += 1
        return tok

    def error(self, what: str) -> HclEvalError:
        return HclEvalError(f"{what} in {self.expr!r}")

    # -- grammar -----------------------------------------------------------------------
    def parse(self) -> Any:
        value = self.ternary()
        if self.peek().kind != "end":
            raise self.error(f"unexpected {self.peek().text!r}")
        return value

    def ternary(self) -> Any:
        cond = self.binary(0)
        if self.peek().text != "?":
            return cond
        self.take("?")
        yes = self.ternary()  # both branches are evaluated: keep them free of side effects
        self.take(":")
        no = self.ternary()
        return yes if cond else no

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("==", "!="),
        ("<", ">", "<=", ">="),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def binary(self, level: int) -> Any:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek().kind == "op" and self.peek().text in self._LEVELS[level]:
            op = self.take().text
            right = self.binary(level + 1)
            left = _apply(op, left, right, self)
        return left

    def unary(self) -> Any:
        if self.peek().text == "!":
            self.take()
            return not self.unary()
        if self.peek().text == "-":
            self.take()
            return -self.unary()
        return self.postfix()

    def postfix(self) -> Any:
        value = self.primary()
        while True:
            if self.peek().text == "." and self.peek(1).kind in ("ident", "num"):
                self.take()
                name = self.take().text
                value = _attr(value, name, self)
            elif self.peek().text == "[":
                self.take()
                index = self.ternary()
                self.take("]")
                value = _index(value, index, self)
            else:
                return value

    def primary(self) -> Any:
        tok = self.peek()
        if tok.kind == "num":
            self.take()
            return float(tok.text) if "." in tok.text else int(tok.text)
        if tok.kind == "str":
            self.take()
            return render_string(_unquote(tok.text), self.scope)
        if tok.text == "(":
            self.take()
            value = self.ternary()
            self.take(")")
            return value
        if tok.text == "[":
            return self.list_or_for()
        if tok.text == "{":
            return self.object()
        if tok.kind == "ident":
            self.take()
            if tok.text in ("true", "false"):
                return tok.text == "true"
            if tok.text == "null":
                return None
            if self.peek().text == "(":
                return self.call(tok.text)
            if tok.text not in self.scope:
                if is_runtime_name(tok.text):
                    raise RuntimeReference(tok.text)
                raise self.error(f"unknown name {tok.text!r}")
            return self.scope[tok.text]
        raise self.error(f"unexpected {tok.text!r}")

    def call(self, name: str) -> Any:
        func = FUNCTIONS.get(name)
        if func is None:
            raise self.error(f"function {name}() is not supported by this evaluator")
        self.take("(")
        args: list[Any] = []
        while self.peek().text != ")":
            args.append(self.ternary())
            if self.peek().text == ",":
                self.take()
        self.take(")")
        try:
            return func(*args)
        except (TypeError, ValueError) as exc:
            raise self.error(f"{name}() failed: {exc}") from exc

    def list_or_for(self) -> list[Any]:
        self.take("[")
        if self.peek().text == "for":
            return self.for_expr()
        items: list[Any] = []
        while self.peek().text != "]":
            items.append(self.ternary())
            if self.peek().text == ",":
                self.take()
        self.take("]")
        return items

    def for_expr(self) -> list[Any]:
        self.take("for")
        names = [self.take().text]
        if self.peek().text == ",":
            self.take()
            names.append(self.take().text)
        self.take("in")
        coll = self.ternary()
        self.take(":")
        body_start = self.pos
        pairs = list(enumerate(coll)) if isinstance(coll, list) else list(dict(coll).items())
        results: list[Any] = []
        end_pos = body_start
        if not pairs:
            # Evaluate nothing; still skip the body tokens by parsing with an empty-safe scope.
            depth = 0
            while not (depth == 0 and self.peek().text == "]"):
                if self.peek().text in "([{":
                    depth += 1
                elif self.peek().text in ")]}":
                    depth -= 1
                if self.peek().kind == "end":
                    raise self.error("unterminated for expression")
                self.take()
            self.take("]")
            return results
        for key, val in pairs:
            bound = {names[0]: val} if len(names) == 1 else {names[0]: key, names[1]: val}
            sub = _Parser.__new__(_Parser)
            sub.expr, sub.toks, sub.pos = self.expr, self.toks, body_start
            sub.scope = {**self.scope, **bound}
            item = sub.ternary()
            keep = True
            if sub.peek().text == "if":
                sub.take()
                keep = bool(sub.ternary())
            if keep:
                results.append(item)
            end_pos = sub.pos
        self.pos = end_pos
        self.take("]")
        return results

    def object(self) -> dict[str, Any]:
        self.take("{")
        obj: dict[str, Any] = {}
        while self.peek().text != "}":
            key_tok = self.take()
            key = _unquote(key_tok.text) if key_tok.kind == "str" else key_tok.text
            if self.peek().text not in ("=", ":"):
                raise self.error(f"expected '=' after object key {key!r}")
            self.take()
            obj[key] = self.ternary()
            if self.peek().text == ",":
                self.take()
        self.take("}")
        return obj


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _attr(value: Any, name: str, parser: _Parser) -> Any:
    if isinstance(value, Mapping):
        if name not in value:
            raise parser.error(f"no attribute {name!r}")
        return value[name]
    if isinstance(value, list) and name.isdigit():
        return value[int(name)]
    raise parser.error(f"cannot read attribute {name!r} of {type(value).__name__}")


def _index(value: Any, index: Any, parser: _Parser) -> Any:
    try:
        return value[int(index)] if isinstance(value, list) else value[index]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise parser.error(f"bad index {index!r}") from exc


def _apply(op: str, left: Any, right: Any, parser: _Parser) -> Any:
    try:
        match op:
            case "||":
                return bool(left) or bool(right)
            case "&&":
                return bool(left) and bool(right)
            case "==":
                return left == right
            case "!=":
                return left != right
            case "<":
                return left < right
            case ">":
                return left > right
            case "<=":
                return left <= right
            case ">=":
                return left >= right
            case "+":
                return left + right
            case "-":
                return left - right
            case "*":
                return left * right
            case "/":
                return left / right
            case "%":
                return left % right
    except TypeError as exc:
        raise parser.error(f"operator {op} on {left!r} and {right!r}") from exc
    raise parser.error(f"unknown operator {op}")


def evaluate(expr: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate one HCL expression (the text inside ``${ }``) in ``scope``."""
    return _Parser(expr, scope).parse()


# -- string templates --------------------------------------------------------------------

def _find_close(text: str, start: int) -> int:
    """Index of the ``}`` closing a ``${``/``%{`` opened just before ``start``."""
    depth = 0
    i = start
    in_str = False
    while i < len(text):
        ch = text[i]
        if in_str:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise HclEvalError(f"unterminated interpolation in {text[start - 2:start + 40]!r}")


@dataclass
class _Part:
    kind: str  # "text", "interp", "directive"
    text: str
    strip_before: bool = False
    strip_after: bool = False


def _split_template(text: str) -> list[_Part]:
    parts: list[_Part] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$${", i) or text.startswith("%%{", i):
            buf.append(text[i + 1 : i + 3])
            i += 3
            continue
        if text.startswith("${", i) or text.startswith("%{", i):
            close = _find_close(text, i + 2)
            inner = text[i + 2 : close]
            strip_before = inner.startswith("~")
            strip_after = inner.endswith("~")
            inner = inner.strip("~").strip()
            if buf:
                parts.append(_Part("text", "".join(buf)))
                buf = []
            kind = "interp" if text[i] == "$" else "directive"
            parts.append(_Part(kind, inner, strip_before, strip_after))
            i = close + 1
            continue
        buf.append(text[i])
        i += 1
    if buf:
        parts.append(_Part("text", "".join(buf)))
    # Apply strip markers to neighbouring literal text.
    for idx, part in enumerate(parts):
        if part.kind == "text":
            continue
        if part.strip_before and idx > 0 and parts[idx - 1].kind == "text":
            parts[idx - 1].text = parts[idx - 1].text.rstrip()
        if part.strip_after and idx + 1 < len(parts) and parts[idx + 1].kind == "text":
            parts[idx + 1].text = parts[idx + 1].text.lstrip()
    return parts


def _render_parts(parts: list[_Part], scope: Mapping[str, Any], whole: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part.kind == "text":
            out.append(part.text)
            i += 1
        elif part.kind == "interp":
            try:
                out.append(_to_str(evaluate(part.text, scope)))
            except RuntimeReference:
                out.append("${" + part.text + "}")
            i += 1
        else:
            body_end, else_at = _match_directive(parts, i, whole)
            head = part.text
            if head.startswith("for "):
                m = re.fullmatch(r"for\s+(\w+)(?:\s*,\s*(\w+))?\s+in\s+(.+)", head, re.S)
                if not m:
                    raise HclEvalError(f"bad for directive %{{{head}}}")
                coll = evaluate(m.group(3), scope)
                pairs = list(enumerate(coll)) if isinstance(coll, list) else list(coll.items())
                for key, val in pairs:
                    bound = (
                        {m.group(1): val}
                        if m.group(2) is None
                        else {m.group(1): key, m.group(2): val}
                    )
                    out.append(_render_parts(parts[i + 1 : body_end], {**scope, **bound}, whole))
            elif head.startswith("if "):
                cond = evaluate(head[3:], scope)
                if else_at is None:
                    chosen = parts[i + 1 : body_end] if cond else []
                else:
                    chosen = parts[i + 1 : else_at] if cond else parts[else_at + 1 : body_end]
                out.append(_render_parts(chosen, scope, whole))
            else:
                raise HclEvalError(f"unsupported template directive %{{{head}}}")
            i = body_end + 1
    return "".join(out)


def _match_directive(parts: list[_Part], start: int, whole: str) -> tuple[int, int | None]:
    depth = 0
    else_at: int | None = None
    for j in range(start + 1, len(parts)):
        part = parts[j]
        if part.kind != "directive":
            continue
        word = part.text.split()[0] if part.text else ""
        if word in ("for", "if"):
            depth += 1
        elif word in ("endfor", "endif"):
            if depth == 0:
                return j, else_at
            depth -= 1
        elif word == "else" and depth == 0:
            else_at = j
    raise HclEvalError(f"unterminated %{{{parts[start].text}}} in {whole[:60]!r}")


_SINGLE_INTERP = re.compile(r"\A\$\{(?!.*\$\{)(.*)\}\Z", re.S)


def render_string(text: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate an HCL string template. A string that is exactly one ``${expr}`` returns the
    expression's value unconverted (HCL does the same), anything else returns a string."""
    single = _SINGLE_INTERP.match(text)
    if single and "%{" not in text:
        try:
            close = _find_close(text, 2)
        except HclEvalError:
            close = -1
        if close == len(text) - 1:
            try:
                return evaluate(single.group(1).strip("~").strip(), scope)
            except RuntimeReference:
                return text
    if "${" not in text and "%{" not in text and "$${" not in text and "%%{" not in text:
        return text
    return _render_parts(_split_template(text), scope, text)
