"""The request contract of the served model, and the row-level rules every request must meet.

The contract is the model's own: its input columns, and the ranges, levels and text limits of
the dataset schema it was trained under (``persona.data.rules``, the rules data validation
applies to a table before training). So a value that could never have been trained on (an age
of -500, a channel "fax") is refused or flagged here by the same rule, under the same name.

A model with derived features takes the raw columns they are computed from (the model computes
them); its date columns travel as text columns, in the schema's format or ISO, under the date
rule validation applies too (a date that cannot be read is refused or flagged like any value).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any

import numpy as np

from persona.data.rules import (
    MAX_TEXT_CHARS,
    AtLeast,
    AtMost,
    IntegerValued,
    OneOf,
    Rule,
    ValidDate,
    categorical_rules,
    date_rules,
    id_rules,
    numeric_rules,
)
from persona.data.schema import DatasetSchema
from persona.errors import ConfigurationError
from persona.serving.options import EXTRA_COLUMNS
from persona.serving.problems import RowProblem, problem

try:  # a typed decoder checks a valid records batch in C, in half the time of orjson + checks
    import msgspec
except ImportError:  # pragma: no cover - exercised only where msgspec is absent
    msgspec = None  # type: ignore[assignment]


@dataclass(frozen=True)
class InputSpec:
    """Which columns a customer record carries, and the rules their values follow."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]  # text columns: categorical features, then dates (as text)
    id_column: str | None = "customer_id"
    ignored: tuple[str, ...] = ()  # accepted and dropped (month, truth, passthrough columns)
    max_rows: int = 100_000
    nullable: bool = True  # may feature values be null? (the model imputes)
    numeric_rules: tuple[tuple[Rule, ...], ...] = ()  # per numeric column; () = none
    categorical_rules: tuple[tuple[Rule, ...], ...] = ()  # per categorical column
    extra_columns: str = "reject"  # "ignore": any other column is accepted and reported
    dates: tuple[str, ...] = ()  # the text columns that hold dates

    def __post_init__(self) -> None:
        names = [*self.numeric, *self.categorical, *self.ignored]
        if self.id_column:
            names.append(self.id_column)
        repeated = sorted(name for name, n in Counter(names).items() if n > 1)
        if repeated:
            raise ConfigurationError(f"input spec: columns listed in two roles: {repeated}")
        if not self.numeric and not self.categorical:
            raise ConfigurationError("input spec: no feature columns")
        if self.max_rows < 1:
            raise ConfigurationError(f"input spec: max_rows must be >= 1, got {self.max_rows}")
        if self.extra_columns not in EXTRA_COLUMNS:
            raise ConfigurationError(
                f"extra columns must be one of {list(EXTRA_COLUMNS)}, got {self.extra_columns!r}"
            )
        if self.numeric_rules and len(self.numeric_rules) != len(self.numeric):
            raise ConfigurationError("input spec: one rule tuple per numeric column")
        if self.categorical_rules and len(self.categorical_rules) != len(self.categorical):
            raise ConfigurationError("input spec: one rule tuple per categorical column")
        if set(self.dates) - set(self.categorical):
            raise ConfigurationError("input spec: date columns must be text columns")

    @classmethod
    def from_schema(
        cls,
        schema: DatasetSchema,
        max_rows: int,
        features: tuple[list[str], list[str]] | None = None,
        extra_columns: str = "reject",
    ) -> InputSpec:
        """The contract of a dataset schema, for the given (numeric, text) model inputs, or
        by default the schema's raw input columns (derived features' raw columns included).

        Schema columns the model does not use, the month, truth, passthrough, date and
        excluded columns are accepted and ignored (an export is sent as it is); every input the
        schema describes carries the schema's rules.
        """
        numeric, categorical = features or (
            list(schema.numeric),
            [*schema.input_dates, *schema.categorical],
        )
        used = {*numeric, *categorical, schema.id_column}
        candidates = (
            schema.month_column,
            schema.truth_column,
            *schema.features,
            *schema.date_columns,
            *schema.passthrough,
            *schema.date_columns,
            *schema.excluded,
        )
        ignored = tuple(dict.fromkeys(c for c in candidates if c and c not in used))
        return cls(
            numeric=tuple(numeric),
            categorical=tuple(categorical),
            id_column=schema.id_column,
            ignored=ignored,
            max_rows=max_rows,
            numeric_rules=tuple(
                numeric_rules(schema, n) if n in schema.numeric else () for n in numeric
            ),
            categorical_rules=tuple(_text_rules(schema, n) for n in categorical),
            extra_columns=extra_columns,
            dates=tuple(n for n in categorical if n in schema.date_columns),
        )

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @cached_property
    def known(self) -> frozenset[str]:
        """Every column a request may carry by name."""
        extra = (self.id_column,) if self.id_column else ()
        return frozenset((*self.features, *self.ignored, *extra))

    @cached_property
    def records_decoder(self) -> Any:
        """A msgspec decoder that accepts only a valid records batch of this contract, or None.

        It is an accelerator, not a validator of record: whatever it refuses is parsed again by
        the general path, which names every problem.
        """
        if msgspec is None:
            return None
        unset = msgspec.UnsetType
        number = float | None | unset if self.nullable else float | unset
        text = str | None | unset if self.nullable else str | unset
        fields: list[tuple[str, Any, Any]] = [(n, number, msgspec.UNSET) for n in self.numeric]
        fields += [(n, text, msgspec.UNSET) for n in self.categorical]
        if self.id_column:
            # An integer id outside int64 goes the general way: orjson reads it as a float (the
            # general path then names it), so the fast path must not pass it on as an exact int
            id_int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
            fields.append((self.id_column, id_int | str | unset, msgspec.UNSET))
        fields += [(n, Any, msgspec.UNSET) for n in self.ignored]
        # Struct attribute names must be identifiers; a contract that has others stays general.
        if not all(name.isidentifier() for name, _, _ in fields):
            return None
        record = msgspec.defstruct("Record", fields, forbid_unknown_fields=True, gc=False)
        if "customers" in self.known:  # then {"customers": ...} is a columnar body
            return msgspec.json.Decoder(list[record])
        wrapper = msgspec.defstruct(
            "Customers", [("customers", list[record])], forbid_unknown_fields=True
        )
        return msgspec.json.Decoder(list[record] | wrapper)

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema (OpenAPI 3.0 dialect) of one customer record, for the API document."""
        properties: dict[str, Any] = {}
        if self.id_column:
            properties[self.id_column] = {
                "oneOf": [
                    {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS},
                    {"type": "integer"},
                ],
                "description": "Optional customer id (in every record or in none), echoed as "
                "given.",
            }
        numeric_rules = self.numeric_rules or ((),) * len(self.numeric)
        for name, rules in zip(self.numeric, numeric_rules, strict=True):
            properties[name] = {"type": "number", **_number_keywords(rules), **self._null()}
        categorical_rules = self.categorical_rules or ((),) * len(self.categorical)
        for name, rules in zip(self.categorical, categorical_rules, strict=True):
            properties[name] = {"type": "string", **_text_keywords(rules, self.nullable)}
            properties[name].update(self._null())
        for name in self.ignored:
            properties[name] = {"description": "Accepted and ignored (reported in the answer)."}
        schema: dict[str, Any] = {
            "type": "object",
            "title": "Customer",
            "properties": properties,
            "required": list(self.features),
            "additionalProperties": self.extra_columns == "ignore",
        }
        if self.nullable:
            schema["description"] = (
                "Every record carries every feature; null is a missing value, which the model "
                "imputes."
            )
        return schema

    @cached_property
    def _numeric_limits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The numeric rules as arrays: lower and upper bounds, whole-number columns."""
        low = np.full(len(self.numeric), -np.inf)
        high = np.full(len(self.numeric), np.inf)
        whole = []
        for j, rules in enumerate(self.numeric_rules):
            for rule in rules:
                if isinstance(rule, AtLeast):
                    low[j] = max(low[j], rule.bound)
                elif isinstance(rule, AtMost):
                    high[j] = min(high[j], rule.bound)
                elif isinstance(rule, IntegerValued):
                    whole.append(j)
                else:  # a rule kind the arrays do not express: always check the column
                    low[j] = np.nan
        return low, high, np.array(whole, dtype=np.intp)

    def suspicious_numeric(self, numeric: np.ndarray) -> np.ndarray:
        """Numeric columns where some value may break a rule (one pass over the whole batch;
        the rules then name the rows of those columns only)."""
        if not self.numeric_rules:
            return np.empty(0, dtype=np.intp)
        low, high, whole = self._numeric_limits
        suspicious = np.isnan(low)
        # any() over the whole matrix first: per column (axis 0) is 2x slower, and only needed
        # when some value is off
        with np.errstate(invalid="ignore"):
            outside = (numeric < low) | (numeric > high)
            if outside.any():
                suspicious |= outside.any(axis=0)
            if whole.size:
                part = numeric[:, whole]
                fractional = np.isfinite(part) & (part != np.trunc(part))
                if fractional.any():
                    suspicious[whole] |= fractional.any(axis=0)
        return np.flatnonzero(suspicious)

    def _null(self) -> dict[str, Any]:
        return {"nullable": True} if self.nullable else {}


def _text_rules(schema: DatasetSchema, name: str) -> tuple[Rule, ...]:
    if name in schema.categorical:
        return categorical_rules(schema, name)
    if name in schema.date_columns:
        return date_rules(schema, name)
    return ()


def _number_keywords(rules: tuple[Rule, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rule in rules:
        if isinstance(rule, AtLeast):
            out["minimum"] = rule.bound
        elif isinstance(rule, AtMost):
            out["maximum"] = rule.bound
        elif isinstance(rule, IntegerValued):
            out["multipleOf"] = 1
    return out


def _text_keywords(rules: tuple[Rule, ...], nullable: bool) -> dict[str, Any]:
    for rule in rules:
        if isinstance(rule, ValidDate):  # ISO is always read; the description adds the rest
            return {"format": "date", "description": rule.expected[:1].upper() + rule.expected[1:]}
        if isinstance(rule, OneOf):
            levels: list[Any] = sorted(rule.levels)
            return {"enum": [*levels, None] if nullable else levels}
    return {"maxLength": MAX_TEXT_CHARS}


@dataclass(frozen=True, eq=False)
class Levels:
    """A text column as its distinct values and, per row, which one it holds.

    Read from Arrow (a dictionary), it lets the rules and the fast path look at each distinct
    value once instead of once per row: a 100k-row batch has a handful of channels.
    """

    values: np.ndarray  # object: the distinct texts (None only if an Arrow dictionary holds it)
    codes: np.ndarray  # intp per row: a position in ``values``, ``len(values)`` where missing

    def per_row(self, per_value: np.ndarray, missing: Any = False) -> np.ndarray:
        """Something known per distinct value (``missing`` for a missing one), per row."""
        return np.append(per_value, np.asarray([missing], dtype=per_value.dtype))[self.codes]

    def take(self, rows: np.ndarray) -> Levels:
        return Levels(self.values, self.codes[rows])


@dataclass(frozen=True, eq=False)
class Batch:
    """A parsed batch, in the arrays the model consumes, with what its rows got wrong."""

    # echoed ids: a list as sent, or an Arrow array (an Arrow body: answered as it came); None
    # when the client sent none
    ids: Any
    numeric: np.ndarray  # (n, len(spec.numeric)) float64, NaN = missing, order of spec.numeric
    categorical: list[np.ndarray]  # one object array of str/None per spec.categorical column
    n_rows: int
    problems: tuple[RowProblem, ...] = ()  # values of the wrong type; rules come later
    ignored_columns: tuple[str, ...] = ()  # columns sent that are not model inputs
    # The values of an ignored column as sent (None where absent), read only when echoed.
    read_ignored: Callable[[str], list] = field(default=lambda name: [], repr=False)
    # per spec.categorical column, its distinct values where the parser had them (() : none)
    levels: tuple[Levels | None, ...] = ()
    ids_checked: bool = False  # the id rules were applied where the ids were read

    def subset(self, rows: np.ndarray) -> Batch:
        """The rows at these positions (for scoring the valid rows of a flagged batch)."""
        if self.ids is None:
            ids = None
        elif hasattr(self.ids, "take"):  # an Arrow (or numpy) array
            ids = self.ids.take(rows)
        else:
            ids = [self.ids[i] for i in rows.tolist()]
        return Batch(
            ids,
            self.numeric[rows],
            [c[rows] for c in self.categorical],
            int(rows.size),
            levels=tuple(None if c is None else c.take(rows) for c in self.levels),
            ids_checked=self.ids_checked,
        )


def id_values(ids: Any) -> list | None:
    """The ids as Python values (an Arrow array converted), for the scoring log."""
    if ids is None:
        return None
    if hasattr(ids, "to_pylist"):
        return ids.to_pylist()
    return ids.tolist() if isinstance(ids, np.ndarray) else list(ids)


def check_rows(batch: Batch, spec: InputSpec) -> list[RowProblem]:
    """Every value that breaks a rule of the contract (missing values never do).

    Vectorised per column, so a valid batch costs a few numpy comparisons and one set per
    categorical column (a rule of a column read with its ``Levels`` sees each value once).
    """
    found: list[RowProblem] = []
    for j in spec.suspicious_numeric(batch.numeric):
        for rule in spec.numeric_rules[j]:
            _add(found, rule, spec.numeric[j], batch.numeric[:, j])
    for j, rules in enumerate(spec.categorical_rules):
        levels = batch.levels[j] if batch.levels else None
        for rule in rules:
            _add(found, rule, spec.categorical[j], batch.categorical[j], levels)
    if spec.id_column and batch.ids is not None and not batch.ids_checked:
        for rule in id_rules():
            _add(found, rule, spec.id_column, batch.ids)
    return found


def _add(
    found: list[RowProblem],
    rule: Rule,
    name: str,
    values: np.ndarray | list,
    levels: Levels | None = None,
) -> None:
    broken = rule.broken(values) if levels is None else levels.per_row(rule.broken(levels.values))
    if broken.any():
        rows = np.flatnonzero(broken)
        value = values[rows[0]]
        got = _shown(value)
        found.append(problem("invalid_value", name, rows, rule.expected, got, rule.name, values))


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return repr(value)
