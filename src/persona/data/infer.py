"""A first schema for a customer file, guessed from its values and written for a person to check.

Pure: a frame in (as ``persona.data.files`` reads it), an ``InferredSchema`` out; the CLI writes
its YAML. The guess is a starting point, so every rule leaves a comment where a person must
decide. The rules, in the order they are tried on each column:

- id: no empty and no repeated value (per month when the file has a month column), whole
  numbers or short text without spaces (a unique float is a measurement). Names such as ID,
  customer_id, cust_no or ClientKey come first, then the leftmost; ``id_column`` overrides.
- excluded, with the reason: a column with no header name, more than half empty, one value
  only, YYYY-MM values when it is not the month column, another id, or text that is not
  categorical (more than 20 distinct values, or fewer than two rows per value): free text
  when its values average three words or more, else high cardinality.
- date: text whose every value parses with one strftime format holding a day; pandas guesses
  the candidates from the values; day-first wins when both orders fit (noted).
- numeric: integer or float values; the observed min/max, integer when every value is whole.
  Whole numbers with at most 10 distinct values stay numeric (counts and scales cluster well
  as numbers) with a note asking whether they are codes.
- categorical: text (or true/false) with at most 20 distinct values, levels as the reader
  gives them (``files.as_text``), so validating the same file passes.
"""

from __future__ import annotations

import logging
import math
import re
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml

from persona.data.derived import parse_dates
from persona.data.files import as_text
from persona.data.months import MONTH_PATTERN
from persona.data.schema import DatasetSchema, DateSpec, NumericSpec
from persona.errors import InvalidInputError

logger = logging.getLogger(__name__)

MAX_LEVELS = 20  # more distinct text values than this is not a categorical
MIN_ROWS_PER_LEVEL = 2
CODE_LEVELS = 10  # whole numbers with at most this many values: a count, or a code?
MOSTLY_EMPTY = 0.5
FREE_TEXT_WORDS = 3.0
MAX_ID_CHARS = 64  # the tables key ids as VARCHAR(64)
RARE_LEVEL_SHARE = 0.01
DEFAULT_MONTH_COLUMN = "snapshot_month"
DEFAULT_NULL_SHARE = 0.05
DEFAULT_MIN_ROWS = 50
SHOWN_PROBLEMS = 8
_ID_WORD = re.compile(
    r"(^|[^a-z])(id|key|nr|no|num|number)([^a-z]|$)|^(customer|client|cust|user|member|account)",
    re.IGNORECASE,
)
_CAMEL_ID = re.compile(r"[a-z](Id|ID)$")  # CustomerID, userId; not "Paid"
_MONTH = re.compile(MONTH_PATTERN)
CHECK = "CHECK: "
COMMENT_WIDTH = 96


@dataclass(frozen=True)
class InferredSchema:
    """The schema guessed from a file, the id candidates and what a person should check."""

    schema: DatasetSchema
    rows: int
    id_candidates: tuple[str, ...]
    month_in_file: bool
    notes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # column -> comments
    general: tuple[str, ...] = ()  # comments on the schema's top-level settings

    def summary(self) -> dict[str, Any]:
        schema = self.schema
        return {
            "rows": self.rows,
            "id_column": schema.id_column,
            "id_candidates": list(self.id_candidates),
            "month_column": schema.month_column,
            "month_in_file": self.month_in_file,
            "numeric_features": list(schema.numeric),
            "categorical_features": list(schema.categorical),
            "date_columns": {name: spec.format for name, spec in schema.date_columns.items()},
            "excluded": dict(schema.excluded),
            "checks": sum(
                line.startswith(CHECK)
                for line in (*self.general, *(n for ns in self.notes.values() for n in ns))
            ),
        }

    def to_yaml(self, source: str = "", read_as: str = "") -> str:
        """The schema as YAML a person can read: each guess with the comment that explains it."""
        return _render(self, source, read_as)


def infer_schema(
    frame: pd.DataFrame, id_column: str | None = None, month_column: str | None = None
) -> InferredSchema:
    """Guess the roles of ``frame``'s columns (the module docstring lists the rules)."""
    if frame.empty:
        raise InvalidInputError("the file has no rows: nothing to infer a schema from")
    notes: dict[str, list[str]] = {}
    month, month_in_file = _month_column(frame, month_column, notes)
    per_month = frame[month] if month_in_file else None
    candidates = [
        c
        for c in frame.columns
        if c != month and not _unnamed(c) and _id_problem(frame[c], per_month) is None
    ]
    candidates.sort(key=lambda c: (not _id_like(c), list(frame.columns).index(c)))
    chosen = _choose_id(frame, id_column, month, candidates, per_month, notes)
    numeric: dict[str, NumericSpec] = {}
    categorical: dict[str, tuple[str, ...]] = {}
    dates: dict[str, str | None] = {}
    excluded: dict[str, str] = {}
    for name in frame.columns:
        if name in (chosen, month):
            continue
        role, detail = _classify(frame[name], name, chosen, candidates, bool(month_in_file), notes)
        if role == "numeric":
            numeric[name] = detail
        elif role == "categorical":
            categorical[name] = detail
        elif role == "date":
            dates[name] = detail
        else:
            excluded[name] = detail
    if not numeric:
        raise InvalidInputError(
            f"no numeric column to cluster on: categorical {list(categorical)}, dates "
            f"{list(dates)}, excluded {excluded}; clustering needs at least one number"
        )
    general: list[str] = []
    share = _null_share(frame, [*numeric, *categorical], general)
    min_rows = DEFAULT_MIN_ROWS
    if len(frame) < DEFAULT_MIN_ROWS:
        min_rows = len(frame)
        general.append(
            f"{CHECK}min_rows lowered from {DEFAULT_MIN_ROWS} to the {len(frame)} rows of this "
            "file: is that enough customers to find personas?"
        )
    schema = DatasetSchema(
        id_column=chosen,
        numeric=numeric,
        categorical=categorical,
        month_column=month,
        max_null_share=share,
        min_rows=min_rows,
        date_columns={name: DateSpec(fmt) for name, fmt in dates.items()},
        excluded=excluded,
    )
    logger.info(
        "inferred %d numeric, %d categorical, %d date, %d excluded column(s); id %r",
        len(numeric),
        len(categorical),
        len(dates),
        len(excluded),
        chosen,
    )
    return InferredSchema(
        schema=schema,
        rows=len(frame),
        id_candidates=tuple(candidates),
        month_in_file=month_in_file,
        notes={name: tuple(lines) for name, lines in notes.items()},
        general=tuple(general),
    )


def _month_column(
    frame: pd.DataFrame, given: str | None, notes: dict[str, list[str]]
) -> tuple[str, bool]:
    """The month column's name and whether the file has it."""
    name = given or DEFAULT_MONTH_COLUMN
    if name not in frame.columns:
        if given:
            raise InvalidInputError(
                f"month column {given!r} is not in the file; columns: {list(frame.columns)}"
            )
        return name, False
    values = frame[name]
    bad = values[~values.map(lambda v: isinstance(v, str) and bool(_MONTH.fullmatch(v)))]
    if len(bad):
        raise InvalidInputError(
            f"month column {name!r}: {len(bad)} value(s) are not YYYY-MM, e.g. "
            f"{bad.head(3).tolist()}"
            + ("" if given else "; name the real month column with --month COL, or rename it")
        )
    notes[name] = [f"the file's months: {sorted(values.unique())}"]
    return name, True


def _id_like(name: str) -> bool:
    return bool(_ID_WORD.search(name) or _CAMEL_ID.search(name))


def _unnamed(name: str) -> bool:
    return name.startswith("Unnamed: ")  # pandas' name for a blank header cell


def _id_problem(values: pd.Series, per_month: pd.Series | None) -> str | None:
    """Why ``values`` cannot key customers, or None when they can."""
    if values.isna().any():
        return f"{int(values.isna().sum())} empty value(s)"
    keys = {"id": values.to_numpy()}
    if per_month is not None:
        keys["month"] = per_month.to_numpy()
    repeated = pd.DataFrame(keys).duplicated().to_numpy()
    if repeated.any():
        where = "" if per_month is None else " within a month"
        shown = values[repeated].head(3).tolist()
        return f"{int(repeated.sum())} repeated value(s){where}, e.g. {shown}"
    if pd.api.types.is_integer_dtype(values):
        return None
    if not pd.api.types.is_object_dtype(values) and not pd.api.types.is_string_dtype(values):
        return f"{values.dtype} values (an id is whole numbers or text)"
    text = values.astype(str)
    if text.str.len().max() > MAX_ID_CHARS or text.str.contains(r"\s").any():
        return f"text with spaces or longer than {MAX_ID_CHARS} characters"
    return None


def _choose_id(
    frame: pd.DataFrame,
    given: str | None,
    month: str,
    candidates: list[str],
    per_month: pd.Series | None,
    notes: dict[str, list[str]],
) -> str:
    if given:
        if given not in frame.columns:
            raise InvalidInputError(
                f"id column {given!r} is not in the file; columns: {list(frame.columns)}; "
                f"unique, never-empty candidates: {candidates or 'none'}"
            )
        problem = _id_problem(frame[given], per_month)
        if problem:
            raise InvalidInputError(
                f"id column {given!r} cannot identify customers: {problem}; "
                f"unique, never-empty candidates: {candidates or 'none'}"
            )
        chosen = given
    elif candidates:
        chosen = candidates[0]
    else:
        near = {c: _id_problem(frame[c], per_month) for c in frame.columns if c != month}
        raise InvalidInputError(
            "no column can be the id (unique and never empty"
            + (" within a month" if per_month is not None else "")
            + "): "
            + "; ".join(f"{c!r}: {why}" for c, why in list(near.items())[:SHOWN_PROBLEMS])
            + "; add an id column, or name one with --id after fixing it"
        )
    others = [c for c in candidates if c != chosen]
    lines = ["unique and never empty" + (" within a month" if per_month is not None else "")]
    if others:
        lines.append(f"{CHECK}other columns that could be the id: {others}")
    notes[chosen] = lines
    return chosen


def _classify(
    values: pd.Series,
    name: str,
    id_column: str,
    id_candidates: Sequence[str],
    month_in_file: bool,
    notes: dict[str, list[str]],
) -> tuple[str, Any]:
    """(role, detail) of one column: numeric/NumericSpec, categorical/levels, date/format or
    excluded/reason; notes for a person are added to ``notes[name]``."""
    present = values.dropna()
    empty = 1 - len(present) / len(values)
    if _unnamed(name):
        return "excluded", "no name in the header: probably a row number the export wrote"
    if empty > MOSTLY_EMPTY:
        return "excluded", f"mostly empty: {empty:.0%} of rows have no value"
    distinct = present.unique()
    if len(distinct) == 1:
        return "excluded", f"constant: every row is {_plain(distinct[0])!r}"
    if name in id_candidates and _id_like(name):
        return (
            "excluded",
            f"another id (unique, never empty): not a feature; the id is {id_column!r}",
        )
    if pd.api.types.is_datetime64_any_dtype(values):
        return "date", None
    if pd.api.types.is_bool_dtype(values):
        return "categorical", tuple(sorted(as_text(present).unique()))
    if pd.api.types.is_numeric_dtype(values):
        return "numeric", _numeric(present, name, empty, name in id_candidates, notes)
    text = present.astype(str)
    if text.map(lambda v: bool(_MONTH.fullmatch(v))).all():
        hint = "" if month_in_file else f": rerun with --month {name} to make it the month column"
        return "excluded", f"looks like a month (YYYY-MM){hint}"
    fmt = _date_format(text, name, notes)
    if fmt:
        return "date", fmt
    levels = as_text(present)
    counts = levels.value_counts()
    if len(counts) <= MAX_LEVELS and len(present) >= MIN_ROWS_PER_LEVEL * len(counts):
        _level_notes(counts, name, empty, notes)
        return "categorical", tuple(sorted(counts.index))
    return "excluded", _text_reason(text, len(counts), len(values))


def _numeric(
    present: pd.Series, name: str, empty: float, unique: bool, notes: dict[str, list[str]]
) -> NumericSpec:
    low, high = _plain(present.min()), _plain(present.max())
    whole = bool((present == present.round()).all())
    if whole:
        low, high = int(low), int(high)
    lines = []
    if empty:
        lines.append(f"{empty:.1%} empty")
    distinct = sorted(present.unique())
    if whole and len(distinct) <= CODE_LEVELS:
        shown = [str(int(v)) for v in distinct]
        lines.append(
            f"{CHECK}only {len(distinct)} values {shown}: a count or a scale, or a code? If each "
            f"number names a category, move it to categorical_features with levels {shown}"
        )
    q1, q3 = present.quantile(0.25), present.quantile(0.75)
    spread = q3 - q1
    if spread > 0 and (low < q1 - 3 * spread or high > q3 + 3 * spread):
        lines.append(
            f"{CHECK}extreme values: min {low}, max {high}, while half the rows lie in "
            f"{_plain(q1)}..{_plain(q3)}: typos, or real customers?"
        )
    if unique:
        lines.append(f"{CHECK}unique in every row, like an id: is it really a feature?")
    if lines:
        notes[name] = lines
    return NumericSpec(min=low, max=high, integer=whole)


def _date_format(text: pd.Series, name: str, notes: dict[str, list[str]]) -> str | None:
    """The strftime format every value of ``text`` parses with, or None when it is no date."""
    from pandas.tseries.api import guess_datetime_format

    distinct = pd.Series(text.unique())
    guesses: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for value in distinct.head(5):
            for dayfirst in (True, False):
                fmt = guess_datetime_format(value, dayfirst=dayfirst)
                if fmt and "%d" in fmt and fmt not in guesses:
                    guesses.append(fmt)
    fitting = [fmt for fmt in guesses if not parse_dates(distinct, fmt)[1].any()]
    if not fitting:
        return None
    fitting.sort(key=_date_preference)
    if len(fitting) > 1:
        notes.setdefault(name, []).append(
            f"{CHECK}{fitting[1]!r} fits every value too: which order does the file use?"
        )
    return fitting[0]


def _date_preference(fmt: str) -> int:
    """ISO order (year, month, day) when the year leads; day before month otherwise."""
    month_first = fmt.find("%m") < fmt.find("%d")
    return int(month_first != fmt.startswith("%Y"))


def _level_notes(counts: pd.Series, name: str, empty: float, notes: dict[str, list[str]]) -> None:
    lines = [f"{empty:.1%} empty"] if empty else []
    rare = counts[counts < RARE_LEVEL_SHARE * counts.sum()]
    if len(rare):
        shown = ", ".join(
            f"{level!r} ({n} row{'s' * (n != 1)})" for level, n in sorted(rare.items())
        )
        lines.append(f"{CHECK}rare levels {shown}: merge them into a bigger one?")
    if all(level.lstrip("-").isdigit() for level in counts.index):
        lines.append(f"{CHECK}numbers as levels: is this code really categorical?")
    lines.append("the levels seen in this file: add any other level that may come")
    notes[name] = lines


def _text_reason(text: pd.Series, distinct: int, rows: int) -> str:
    numbers = pd.to_numeric(text, errors="coerce")
    words = text.str.split().str.len().mean()
    if numbers.notna().mean() >= 0.9:
        odd = sorted(text[numbers.isna()].unique())[:3]
        return (
            f"mostly numbers ({numbers.notna().mean():.0%}) but also text such as {odd}: "
            "make those empty in the file and infer again to use it as a number"
        )
    if words >= FREE_TEXT_WORDS:
        return f"free text: {distinct} distinct values in {rows} rows, {words:.0f} words each"
    return (
        f"high cardinality: {distinct} distinct values in {rows} rows (a categorical has at "
        f"most {MAX_LEVELS}, each in {MIN_ROWS_PER_LEVEL}+ rows): group them to use it"
    )


def _null_share(frame: pd.DataFrame, features: list[str], general: list[str]) -> float:
    """The default limit, or the worst feature's empty share rounded up (and say which)."""
    shares = frame[features].isna().mean() if features else pd.Series(dtype=float)
    if shares.empty or shares.max() <= DEFAULT_NULL_SHARE:
        return DEFAULT_NULL_SHARE
    worst = float(shares.max())
    limit = math.ceil(worst * 100) / 100
    while limit < worst:  # floating point: the limit must hold the file it came from
        limit = round(limit + 0.01, 2)
    general.append(
        f"{CHECK}max_null_share raised from {DEFAULT_NULL_SHARE} to {limit}: "
        f"{shares.idxmax()!r} is {worst:.1%} empty; a lower limit makes validation stricter"
    )
    return limit


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value YAML writes plainly."""
    return value.item() if hasattr(value, "item") else value


# --- YAML with comments ----------------------------------------------------------------------


def _scalar(value: Any) -> str:
    """One YAML scalar (quoted when YAML would read it as something else)."""
    text = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=10**9)
    return text.strip()[1:-1]


def _comments(lines: Sequence[str], indent: str) -> list[str]:
    """Comment lines, wrapped to stay readable in an editor."""
    wrapped: list[str] = []
    for line in lines:
        wrapped += textwrap.wrap(
            line,
            COMMENT_WIDTH - len(indent),
            initial_indent=f"{indent}# ",
            subsequent_indent=f"{indent}#   ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    return wrapped


def _render(inferred: InferredSchema, source: str, read_as: str) -> str:
    schema, notes = inferred.schema, inferred.notes
    origin = f" of {source}" if source else ""
    how = f", read as {read_as}" if read_as else ""
    out = _comments(
        [
            f"Schema{origin}, inferred by `persona data infer-schema` from {inferred.rows} "
            f"rows{how}.",
            "It describes this one file: read it, and decide the lines marked CHECK, before "
            "training on it.",
        ],
        "",
    )
    out += [
        "#  - numeric ranges are the observed min/max: widen them to what is plausible,",
        "#    or next month's customers fail validation; integer: true means every value",
        "#    was whole: set it to false if fractions may come",
        "#  - categorical levels are the ones seen: add any level that may still come",
        "#  - date_columns are checked to parse; they are not model inputs by themselves",
        "#  - excluded columns are accepted in files and ignored (not stored by ingest);",
        "#    move one into a section above to use it",
        f"id_column: {_scalar(schema.id_column)}",
        *_comments(notes.get(schema.id_column, ()), ""),
        f"month_column: {_scalar(schema.month_column)}",
    ]
    if inferred.month_in_file:
        out += _comments(notes.get(schema.month_column, ()), "")
    else:
        out += _comments(
            [
                "not in the file: each file is one month, labelled at ingest by",
                "`persona data validate|ingest --month YYYY-MM` (default: the current month)",
            ],
            "",
        )
    out += _comments([g for g in inferred.general if "max_null_share" in g], "")
    out.append(f"max_null_share: {_scalar(schema.max_null_share)}")
    out += _comments([g for g in inferred.general if "min_rows" in g], "")
    out.append(f"min_rows: {schema.min_rows}")
    out.append("numeric_features:")
    for name, spec in schema.numeric.items():
        out += _comments(notes.get(name, ()), "  ")
        out += [
            f"  {_scalar(name)}:",
            f"    min: {_scalar(spec.min)}",
            f"    max: {_scalar(spec.max)}",
            f"    integer: {_scalar(spec.integer)}",
        ]
    out.append("categorical_features:" + ("" if schema.categorical else " {}"))
    for name, levels in schema.categorical.items():
        out += _comments(notes.get(name, ()), "  ")
        out.append(f"  {_scalar(name)}:")
        out += [f"  - {_scalar(level)}" for level in levels or ()]
    out.append("date_columns:" + ("" if schema.date_columns else " {}"))
    for name, spec in schema.date_columns.items():
        out += _comments(notes.get(name, ()), "  ")
        out += [f"  {_scalar(name)}:", f"    format: {_scalar(spec.format)}"]
    out.append("excluded:" + ("" if schema.excluded else " {}"))
    for name, reason in schema.excluded.items():
        out += _comments(notes.get(name, ()), "  ")
        out.append(f"  {_scalar(name)}: {_scalar(reason)}")
    return "\n".join(out) + "\n"
