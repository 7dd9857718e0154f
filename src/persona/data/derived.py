"""Derived features: model inputs computed from raw columns by a small, safe expression language.

A schema's ``derived:`` section defines them, one ``name: expression`` each (or a mapping with
``expr`` and optionally ``min``, ``max``, ``unit``, the ranges validation checks)::

    derived:
      reference_date: 2026-01-01          # optional; see "Dates" below
      age: 2026 - Year_Birth
      tenure_days: days_since(Dt_Customer)
      total_spend: {expr: 'sum("Mnt*")', min: 0, unit: EUR}
      log_income: log1p(coalesce(Income, 0))

The language: numbers, column names, ``+ - * /``, unary minus, parentheses and the functions
``log1p(x)``, ``log(x)``, ``sqrt(x)``, ``abs(x)``, ``clip(x, lo, hi)`` (lo and hi numbers),
``coalesce(x, y)`` (y where x is missing), ``sum(...)`` (of expressions or of text patterns such
as ``"Mnt*"``, which glob over the schema's numeric columns), and on date columns only
``days_since(col)``, ``years_since(col)`` (days / 365.2425) and ``year(col)``. A column an
expression reads must be declared in the schema: a numeric feature or a ``date_columns:`` entry.

Why hand-parse with ``ast``: the standard library already parses this grammar exactly (it is a
subset of Python's expression syntax), and walking its tree against a whitelist lets each refused
construct be named ("function 'exec' is not allowed", "unknown column 'MntWine'; did you mean
'MntWines'?") at schema load, long before anything trains. Nothing is ever passed to ``eval``,
``compile`` or ``pandas.eval``. ``numexpr`` evaluates strings (its own parser, no typed date
functions, no column checks) and ``simpleeval`` interprets Python per value; both would still need
this whitelist and neither evaluates on whole numpy columns with our date semantics. The tree
here is compiled once into small frozen nodes evaluated column-wise with numpy.

Semantics, the same in training, the scoring API, batch scoring and monitoring (all call
``DerivedFeatures.evaluate``): every value is float64; a missing input gives a missing result
(NaN propagates, also through ``sum``); a result that is not a finite number (log of 0, a
division by 0, an overflow) is missing too, which the model imputes like any missing value.

Dates: a date column holds text in its declared ``format`` (strptime, e.g. ``%d-%m-%Y``) or ISO
``YYYY-MM-DD``, or datetime values. ``days_since``/``years_since`` count to a fixed reference
date — ``reference_date:`` in the section, else the training date, frozen into the model — so a
model gives the same answer tomorrow as today.

Which raw columns stay model inputs: every raw numeric feature is a model input unless it is
listed under the schema's ``inputs_only:`` (it then only feeds derived features); date columns
are never model inputs themselves. Both are columns a client and a training file must carry.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from persona.errors import ConfigurationError, InvalidInputError

logger = logging.getLogger(__name__)

MAX_EXPRESSION_CHARS = 1_000
_ISO_DATE = r"\d{4}-\d\d?-\d\d?(?:[T ].*)?"  # a date, and a time that is ignored
REFERENCE_DATE_KEY = "reference_date"
DAYS_PER_YEAR = 365.2425
_ENTRY_KEYS = {"expr", "min", "max", "unit"}
_DATE_FUNCTIONS = ("days_since", "years_since", "year")
_NUMERIC_FUNCTIONS = {"log1p": 1, "log": 1, "sqrt": 1, "abs": 1, "clip": 3, "coalesce": 2}
FUNCTIONS = (*_NUMERIC_FUNCTIONS, "sum", *_DATE_FUNCTIONS)
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


# ------------------------------------------------------------------------------------- dates


def date_format_text(fmt: str | None) -> str:
    """How a date column's format is shown to a person: the pattern and an example."""
    if fmt is None:
        return "YYYY-MM-DD (ISO 8601)"
    return f"{fmt} (e.g. {date(2012, 9, 4).strftime(fmt)}) or YYYY-MM-DD"


def parse_dates(values: Any, fmt: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Days (``datetime64[D]``, NaT where missing or unreadable) and the unreadable-value mask.

    Text is read in ``fmt`` first, then as ISO 8601 (what pandas writes, e.g. "2012-09-04");
    datetime values are taken as they are. Vectorised by pandas; missing is never unreadable.
    """
    array = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    n = len(array)
    if array.dtype.kind == "M":
        return array.astype("datetime64[D]"), np.zeros(n, dtype=bool)
    cells = np.asarray(array, dtype=object)
    days = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    bad = np.zeros(n, dtype=bool)
    missing = pd.isna(cells) if n else np.zeros(0, dtype=bool)
    texts = np.fromiter((type(v) is str for v in cells), dtype=bool, count=n)
    if texts.any():
        text = pd.Series(cells[texts], dtype=object)
        parsed = _to_days(text, fmt or "ISO8601")
        if fmt is not None and np.isnat(parsed).any():
            retry = np.isnat(parsed)
            parsed[retry] = _to_days(text[retry], "ISO8601")
        days[texts] = parsed
        bad[texts] = np.isnat(parsed)
    for i in np.flatnonzero(~texts & ~missing):
        value = cells[i]
        if isinstance(value, date | datetime | np.datetime64 | pd.Timestamp):
            days[i] = np.datetime64(pd.Timestamp(value).date(), "D")
        else:
            bad[i] = True
    return days, bad


def _to_days(text: pd.Series, fmt: str) -> np.ndarray:
    if fmt == "ISO8601":  # pandas also reads "2012" or "20120904" so; only YYYY-MM-DD[...] here
        text = text.where(text.str.fullmatch(_ISO_DATE))
    # utc=True: text with different UTC offsets still parses (to one time line)
    parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True).dt.tz_convert(None)
    return parsed.to_numpy().astype("datetime64[D]")


def as_date(value: Any, what: str) -> date:
    """A date from YAML (a date), JSON (ISO text) or Python; anything else names ``what``."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigurationError(f"{what}: expected a date YYYY-MM-DD, got {value!r}") from None


# ------------------------------------------------------------------------------- the language


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class DateColumn:
    name: str
    format: str | None


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Negative:
    operand: Node


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]


Node = Number | Column | DateColumn | BinOp | Negative | Call


@dataclass(frozen=True)
class DerivedFeature:
    """One derived model input: its expression as written, the compiled tree, its ranges."""

    name: str
    expr: str
    tree: Node = field(repr=False, compare=False)
    min: float | None = None
    max: float | None = None
    unit: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        """The raw columns it reads, in order of first use."""
        return tuple(dict.fromkeys(_columns(self.tree)))

    @property
    def uses_reference_date(self) -> bool:
        return _uses_reference_date(self.tree)

    def to_dict(self) -> str | dict[str, Any]:
        """As written in a schema file: the bare expression unless it has ranges or a unit."""
        extra = {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}
        if self.unit:
            extra["unit"] = self.unit
        return {"expr": self.expr, **extra} if extra else self.expr


@dataclass(frozen=True)
class DerivedFeatures:
    """A schema's derived section: the features in order and the frozen reference date."""

    features: tuple[DerivedFeature, ...] = ()
    reference_date: date | None = None

    def __bool__(self) -> bool:
        return bool(self.features)

    def __iter__(self):
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every raw column some derived feature reads."""
        return tuple(dict.fromkeys(c for f in self.features for c in f.columns))

    @property
    def date_columns(self) -> tuple[str, ...]:
        """The date columns some derived feature reads (through its date functions)."""
        return tuple(dict.fromkeys(n for f in self.features for n in _columns(f.tree, dates=True)))

    @property
    def numeric_columns(self) -> tuple[str, ...]:
        """The numeric columns some derived feature reads."""
        return tuple(dict.fromkeys(n for f in self.features for n in _columns(f.tree, dates=False)))

    @property
    def needs_reference_date(self) -> bool:
        return any(f.uses_reference_date for f in self.features)

    def with_reference_date(self, day: date | str | None) -> DerivedFeatures:
        """Frozen at ``day`` when the section needs a reference date and has none yet."""
        if day is None or self.reference_date is not None or not self.needs_reference_date:
            return self
        return replace(self, reference_date=as_date(day, "reference date"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.reference_date is not None:
            out[REFERENCE_DATE_KEY] = self.reference_date.isoformat()
        out.update((f.name, f.to_dict()) for f in self.features)
        return out

    def evaluate(self, source: Any, bad_dates: str = "raise") -> dict[str, np.ndarray]:
        """Each derived feature as a float64 array, computed column-wise from ``source``.

        ``source``: a DataFrame, or a mapping of column name to array (the scoring API's
        arrays). An unreadable date raises InvalidInputError naming the row, column and format
        (``bad_dates="missing"``: it is a missing value; validation reports it on its own).
        """
        if self.needs_reference_date and self.reference_date is None:
            raise ConfigurationError(
                "derived features use days_since/years_since but no reference date is set: "
                "give derived.reference_date, or freeze the training date "
                "(DatasetSchema.with_reference_date)"
            )
        env = _Environment(source, self.reference_date, bad_dates)
        with np.errstate(all="ignore"):
            return {f.name: _finite(env.evaluate(f.tree)) for f in self.features}

    def add_to(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the derived columns appended (or replaced), same index."""
        if not self.features:
            return frame
        return frame.assign(**self.evaluate(frame))


def _columns(node: Node, dates: bool | None = None) -> list[str]:
    """Columns read by the tree (``dates``: only date columns, or only numeric ones)."""
    if isinstance(node, Column | DateColumn):
        return [node.name] if dates is None or dates == isinstance(node, DateColumn) else []
    if isinstance(node, BinOp):
        return [*_columns(node.left, dates), *_columns(node.right, dates)]
    if isinstance(node, Negative):
        return _columns(node.operand, dates)
    if isinstance(node, Call):
        return [c for arg in node.args for c in _columns(arg, dates)]
    return []


def _uses_reference_date(node: Node) -> bool:
    if isinstance(node, Call):
        own = node.function in ("days_since", "years_since")
        return own or any(_uses_reference_date(arg) for arg in node.args)
    if isinstance(node, BinOp):
        return _uses_reference_date(node.left) or _uses_reference_date(node.right)
    if isinstance(node, Negative):
        return _uses_reference_date(node.operand)
    return False


def _finite(values: np.ndarray) -> np.ndarray:
    out = np.array(values, dtype=np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


class _Environment:
    """Column values as arrays, each read (and each date parsed) once per evaluation."""

    def __init__(self, source: Any, reference: date | None, bad_dates: str) -> None:
        self.source = source
        self.reference = None if reference is None else np.datetime64(reference, "D")
        self.bad_dates = bad_dates
        self.cache: dict[str, np.ndarray] = {}

    def number(self, name: str) -> np.ndarray:
        if name not in self.cache:
            values = self.source[name]
            try:
                if hasattr(values, "to_numpy"):
                    array = values.to_numpy(dtype=np.float64, na_value=np.nan)
                else:
                    array = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"column {name!r} must hold numbers to compute derived features"
                ) from None
            self.cache[name] = array
        return self.cache[name]

    def days(self, column: DateColumn) -> np.ndarray:
        key = f"date:{column.name}"
        if key not in self.cache:
            days, bad = parse_dates(self.source[column.name], column.format)
            if bad.any() and self.bad_dates == "raise":
                rows = np.flatnonzero(bad)
                cells = np.asarray(self.source[column.name], dtype=object)
                raise InvalidInputError(
                    f"date column {column.name!r}: {len(rows)} value(s) are not dates, e.g. row "
                    f"{int(rows[0])}: {cells[rows[0]]!r}; expected {date_format_text(column.format)}"
                )
            self.cache[key] = days
        return self.cache[key]

    def evaluate(self, node: Node) -> Any:
        if isinstance(node, Number):
            return node.value
        if isinstance(node, Column):
            return self.number(node.name)
        if isinstance(node, Negative):
            return -self.evaluate(node.operand)
        if isinstance(node, BinOp):
            left, right = self.evaluate(node.left), self.evaluate(node.right)
            return _BINARY[node.op](left, right)
        if isinstance(node, Call):
            if node.function in _DATE_FUNCTIONS:
                return self._date_function(node.function, node.args[0])
            args = [self.evaluate(arg) for arg in node.args]
            if node.function == "sum":
                total = args[0]
                for value in args[1:]:
                    total = total + value
                return total
            return _FUNCTIONS[node.function](*args)
        raise TypeError(f"not an expression node: {node!r}")  # pragma: no cover - parser's job

    def _date_function(self, function: str, column: DateColumn) -> np.ndarray:
        days = self.days(column)
        missing = np.isnat(days)
        if function == "year":
            out = days.astype("datetime64[Y]").astype(np.int64).astype(np.float64) + 1970
        else:
            out = (self.reference - days).astype(np.int64).astype(np.float64)
            if function == "years_since":
                out /= DAYS_PER_YEAR
        out[missing] = np.nan
        return out


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "log1p": np.log1p,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "clip": np.clip,
    "coalesce": lambda x, y: np.where(np.isnan(x), y, x),
}


# ----------------------------------------------------------------------------------- parsing


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
    if not _columns(tree):
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
                f"{'(), '.join(_DATE_FUNCTIONS)}(), e.g. days_since({name})"
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
        if function in _DATE_FUNCTIONS:
            if len(args) != 1:
                raise _Refused(f"{function}() takes 1 argument, a date column; got {len(args)}")
            return Call(function, (self._date_column(function, args[0]),))
        if function == "sum":
            if not args:
                raise _Refused('sum() needs at least one argument, e.g. sum("Mnt*")')
            return Call("sum", tuple(c for arg in args for c in self._summand(arg)))
        wanted = _NUMERIC_FUNCTIONS[function]
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
