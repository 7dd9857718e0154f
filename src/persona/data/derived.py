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

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from persona.errors import ConfigurationError, InvalidInputError

logger = logging.getLogger(__name__)

_ISO_DATE = r"\d{4}-\d\d?-\d\d?(?:[T ].*)?"  # a date, and a time that is ignored
REFERENCE_DATE_KEY = "reference_date"
DAYS_PER_YEAR = 365.2425
DATE_FUNCTIONS = ("days_since", "years_since", "year")
NUMERIC_FUNCTIONS = {"log1p": 1, "log": 1, "sqrt": 1, "abs": 1, "clip": 3, "coalesce": 2}
FUNCTIONS = (*NUMERIC_FUNCTIONS, "sum", *DATE_FUNCTIONS)


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
        return tuple(dict.fromkeys(columns_read(self.tree)))

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
        return tuple(
            dict.fromkeys(n for f in self.features for n in columns_read(f.tree, dates=True))
        )

    @property
    def numeric_columns(self) -> tuple[str, ...]:
        """The numeric columns some derived feature reads."""
        return tuple(
            dict.fromkeys(n for f in self.features for n in columns_read(f.tree, dates=False))
        )

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


def columns_read(node: Node, dates: bool | None = None) -> list[str]:
    """Columns read by the tree (``dates``: only date columns, or only numeric ones)."""
    if isinstance(node, Column | DateColumn):
        return [node.name] if dates is None or dates == isinstance(node, DateColumn) else []
    if isinstance(node, BinOp):
        return [*columns_read(node.left, dates), *columns_read(node.right, dates)]
    if isinstance(node, Negative):
        return columns_read(node.operand, dates)
    if isinstance(node, Call):
        return [c for arg in node.args for c in columns_read(arg, dates)]
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
            if node.function in DATE_FUNCTIONS:
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
