"""The parser of derived-feature expressions: a schema's ``derived:`` text to frozen nodes.

The language and its semantics are described in :mod:`persona.data.derived`, which evaluates
the nodes; this module only checks and compiles the text, once, at schema load.

Why hand-parse with ``ast``: the standard library already parses this grammar exactly (it is a
subset of Python's expression syntax), and walking its tree against a whitelist lets each refused
construct be named ("function 'exec' is not allowed", "unknown column 'MntWine'; did you mean
'MntWines'?") at schema load, long before anything trains. Nothing is ever passed to ``eval``,
``compile`` or ``pandas.eval``. ``numexpr`` evaluates strings (its own parser, no typed date
functions, no column checks) and ``simpleeval`` interprets Python per value; both would still need
this whitelist and neither evaluates on whole numpy columns with our date semantics. The tree
here is compiled once into small frozen nodes evaluated column-wise with numpy.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from persona.data.derived import (
    DATE_FUNCTIONS,
    FUNCTIONS,
    NUMERIC_FUNCTIONS,
    REFERENCE_DATE_KEY,
    BinOp,
    Call,
    Column,
    DateColumn,
    DerivedFeature,
    DerivedFeatures,
    Negative,
    Node,
    Number,
    as_date,
    columns_read,
)
from persona.errors import ConfigurationError

MAX_EXPRESSION_CHARS = 1_000
_ENTRY_KEYS = {"expr", "min", "max", "unit"}
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
# What a refused construct is called in an error, so the author sees which part to change.
_CONSTRUCTS = {
    ast.Attribute: "attribute access ('.')",
    ast.Subscript: "indexing ('[...]')",
    ast.Compare: "comparisons",
    ast.BoolOp: "'and'/'or'",
    ast.IfExp: "'if ... else'",
    ast.Lambda: "lambda",
    ast.Starred: "'*' unpacking",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.NamedExpr: "':='",
    ast.JoinedStr: "f-strings",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
}


class _Refused(Exception):
    """A problem of one expression; the caller adds the feature, the expression and the file."""


@dataclass(frozen=True)
class _Names:
    """The columns an expression may read, and what else a name could be (for the message)."""

    numeric: Sequence[str]
    dates: Mapping[str, str | None]
    roles: Mapping[str, str]  # other schema columns -> their role ("categorical feature", ...)
    derived: Collection[str]


def parse_derived(
    raw: Mapping[str, Any] | None,
    numeric: Sequence[str],
    dates: Mapping[str, str | None],
    roles: Mapping[str, str],
    source: str = "schema",
) -> DerivedFeatures:
    """The ``derived:`` section of a schema, checked and compiled.

    ``numeric``: the schema's (raw) numeric columns; ``dates``: date column -> format;
    ``roles``: every other column of the schema, named by role, for clearer refusals. Any bad
    entry is a ConfigurationError naming the file, the feature, the expression and the problem.
    """
    if not raw:
        return DerivedFeatures()
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{source}: 'derived' must be a mapping of name: expression")
    reference = raw.get(REFERENCE_DATE_KEY)
    entries = {str(k): v for k, v in raw.items() if k != REFERENCE_DATE_KEY}
    names = _Names(numeric, dates, roles, set(entries))
    features = []
    for name, entry in entries.items():
        features.append(_feature(name, entry, names, source))
    if not features:
        raise ConfigurationError(f"{source}: 'derived' defines no feature")
    return DerivedFeatures(
        tuple(features),
        None if reference is None else as_date(reference, f"{source}: derived.reference_date"),
    )


def _feature(name: str, entry: Any, names: _Names, source: str) -> DerivedFeature:
    where = f"{source}: derived feature {name!r}"
    if name in names.numeric or name in names.dates or name in names.roles:
        role = names.roles.get(name) or (
            "a numeric feature" if name in names.numeric else "a date column"
        )
        raise ConfigurationError(f"{where}: the name is already {role} of the schema")
    spec: dict[str, Any] = {"expr": entry} if not isinstance(entry, Mapping) else dict(entry)
    unknown = set(spec) - _ENTRY_KEYS
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_ENTRY_KEYS)})"
        )
    expr = spec.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigurationError(
            f"{where}: expected an expression (text) such as 'log1p(Income)', got {expr!r}"
        )
    low, high = (_bound(spec.get(k), f"{where}: {k}") for k in ("min", "max"))
    if low is not None and high is not None and low > high:
        raise ConfigurationError(f"{where}: min {low} is above max {high}")
    try:
        tree = compile_expression(expr, names)
    except _Refused as exc:
        raise ConfigurationError(f"{where} = {expr!r}: {exc}") from None
    return DerivedFeature(name, expr, tree, low, high, str(spec.get("unit") or ""))


def _bound(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{what}: expected a number, got {value!r}")
    return value


def compile_expression(expr: str, names: _Names) -> Node:
    """The expression's tree, with every node checked against the whitelist."""
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise _Refused(f"longer than {MAX_EXPRESSION_CHARS} characters")
    text = expr.strip()
    try:
        body = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        offset = exc.offset or 0
        where = f"at column {offset} ({text[offset - 1:]!r})" if 0 < offset <= len(text) else ""
        raise _Refused(f"syntax error {where or 'at the end'}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise _Refused("syntax error: the expression is nested too deeply") from None
    tree = _Compiler(names).node(body)
    if not columns_read(tree):
        raise _Refused("reads no column (a constant is not a feature)")
    return tree


class _Compiler:
    def __init__(self, names: _Names) -> None:
        self.names = names

    def node(self, node: ast.AST) -> Node:
        if isinstance(node, ast.Constant):
            return Number(self._number(node))
        if isinstance(node, ast.Name):
            return self._column(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self.node(node.operand)
            if isinstance(node.op, ast.UAdd):
                return operand
            return Number(-operand.value) if isinstance(operand, Number) else Negative(operand)
        if isinstance(node, ast.BinOp):
            op = _OPERATORS.get(type(node.op))
            if op is None:
                raise _Refused(f"operator {_operator(node.op)!r} is not allowed (use + - * /)")
            return BinOp(op, self.node(node.left), self.node(node.right))
        if isinstance(node, ast.Call):
            return self._call(node)
        what = _CONSTRUCTS.get(type(node), f"'{type(node).__name__}'")
        raise _Refused(
            f"{what} not allowed; use numbers, column names, + - * /, parentheses and "
            f"{', '.join(FUNCTIONS)}"
        )

    def _number(self, node: ast.Constant) -> float:
        value = node.value
        if isinstance(value, str):
            raise _Refused(f"text {value!r} is only allowed as a column pattern in sum()")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Refused(f"constant {value!r} is not allowed (numbers only)")
        number = float(value)
        if not np.isfinite(number):
            raise _Refused(f"number {value!r} is not finite")
        return number

    def _column(self, name: str) -> Column:
        names = self.names
        if name in names.numeric:
            return Column(name)
        if name in names.dates:
            raise _Refused(
                f"date column {name!r} can only be read through "
                f"{'(), '.join(DATE_FUNCTIONS)}(), e.g. days_since({name})"
            )
        raise _Refused(self._not_numeric(name))

    def _not_numeric(self, name: str) -> str:
        names = self.names
        if name in FUNCTIONS:
            return f"function {name!r} must be called, e.g. {name}(x)"
        if name in names.derived:
            return f"{name!r} is another derived feature; derived features read raw columns only"
        if name in names.roles:
            return f"column {name!r} is {names.roles[name]}, not a numeric or date column"
        close = difflib.get_close_matches(name, [*names.numeric, *names.dates], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown column {name!r}{hint}"

    def _call(self, node: ast.Call) -> Node:
        if not isinstance(node.func, ast.Name):
            raise _Refused("only plain function calls such as log1p(x) are allowed")
        function = node.func.id
        if function not in FUNCTIONS:
            raise _Refused(
                f"function {function!r} is not allowed (allowed: {', '.join(FUNCTIONS)})"
            )
        if node.keywords:
            keyword = node.keywords[0].arg or "**"
            raise _Refused(f"{function}() takes positional arguments only (got {keyword}=)")
        args = node.args
        if function in DATE_FUNCTIONS:
            if len(args) != 1:
                raise _Refused(f"{function}() takes 1 argument, a date column; got {len(args)}")
            return Call(function, (self._date_column(function, args[0]),))
        if function == "sum":
            if not args:
                raise _Refused('sum() needs at least one argument, e.g. sum("Mnt*")')
            return Call("sum", tuple(c for arg in args for c in self._summand(arg)))
        wanted = NUMERIC_FUNCTIONS[function]
        if len(args) != wanted:
            noun = "argument" if wanted == 1 else "arguments"
            raise _Refused(f"{function}() takes {wanted} {noun}, got {len(args)}")
        compiled = tuple(self.node(arg) for arg in args)
        if function == "clip":
            low, high = compiled[1:]
            if not (isinstance(low, Number) and isinstance(high, Number)):
                raise _Refused("clip(x, lo, hi) takes numbers as lo and hi")
            if low.value > high.value:
                raise _Refused(f"clip(): lo {low.value:g} is above hi {high.value:g}")
        return Call(function, compiled)

    def _date_column(self, function: str, arg: ast.AST) -> DateColumn:
        if isinstance(arg, ast.Name) and arg.id in self.names.dates:
            return DateColumn(arg.id, self.names.dates[arg.id])
        if isinstance(arg, ast.Name) and arg.id in self.names.numeric:
            raise _Refused(
                f"{function}() needs a date column; {arg.id!r} is numeric "
                f"(declare dates under date_columns:)"
            )
        if isinstance(arg, ast.Name):
            message = self._not_numeric(arg.id)
            raise _Refused(f"{function}() needs a date column: {message}")
        raise _Refused(f"{function}() takes a date column name, e.g. {function}(Dt_Customer)")

    def _summand(self, arg: ast.AST) -> list[Node]:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            matched = [c for c in self.names.numeric if fnmatch.fnmatchcase(c, arg.value)]
            if not matched:
                raise _Refused(
                    f"pattern {arg.value!r} matches no numeric column "
                    f"(numeric columns: {list(self.names.numeric)})"
                )
            return [Column(c) for c in matched]
        return [self.node(arg)]


def _operator(op: ast.AST) -> str:
    return {
        ast.Pow: "**",
        ast.Mod: "%",
        ast.FloorDiv: "//",
        ast.MatMult: "@",
        ast.BitAnd: "&",
        ast.BitOr: "|",
        ast.BitXor: "^",
        ast.LShift: "<<",
        ast.RShift: ">>",
    }.get(type(op), type(op).__name__)
