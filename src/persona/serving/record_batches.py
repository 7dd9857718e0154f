"""Apache Arrow tables and record batches as the arrays of the scoring contract (``Batch``).

The one converter from Arrow to a contract-checked ``contract.Batch``, for two callers that read
values differently:

- ``strict`` (an API request: an Arrow IPC stream or Parquet body, ``payload_arrow``), as the
  JSON parser reads a body: numbers must be of an Arrow number type, text of a string type (a
  date column may also be an Arrow date), ids text or integers; every column sent is named
  (``names``) and one the contract does not know is refused, unless ignored by the contract.
- lenient (the in-process batch job, ``persona.flows.score_stream``), as ``persona.data.files``
  reads a user's file: numbers of any numeric type or text that reads as a number; text for
  categoricals, dates and ids, where a whole number stands for its digits; columns the
  contract does not know are left alone (a file carries more than a request).

Either way a value of the wrong type is a ``RowProblem`` naming field and rows, so the
contract's rules then apply unchanged. Columns are converted by Arrow's compute kernels, never
row by row in Python: a text column keeps its distinct values (``Levels``), so the rules and
the fast path look at each value once; the ids are measured in Arrow (nulls, shortest and
longest text) and turned into Python values only when an id rule may break on them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from persona.data.rules import MaxLength, NonEmpty, Rule, id_rules
from persona.serving.columns import (
    check_columns,
    check_numeric,
    check_size,
    check_unique,
    ignored_columns,
)
from persona.serving.contract import Batch, InputSpec, Levels
from persona.serving.payload_csv import numbers_from_text
from persona.serving.problems import RowProblem, problem

_NUMBERS = "a number"
_NUMBER_TYPES = "an integer or floating-point Arrow type"
_TEXT_TYPES = "an Arrow string type (or dictionary of strings)"
_ID_TYPES = "an Arrow string or integer type"

Column = pa.Array | pa.ChunkedArray


def batch_from_arrow(
    record: pa.RecordBatch | pa.Table,
    spec: InputSpec,
    strict: bool = False,
    names: list[str] | None = None,
) -> Batch:
    """One table or record batch under ``spec``; see the module for ``strict`` and lenient.

    Every feature column must be present (else a PayloadError naming them). ``names``: every
    column of a strict body, when only the known ones were decoded (Parquet).
    """
    n = record.num_rows
    columns = record.schema.names
    if strict:
        names = columns if names is None else names
        check_unique(names)
        check_size(n, spec, "Arrow")
        present = check_columns(names, n, spec)
    else:
        present = check_columns([name for name in columns if name in spec.known], n, spec)
    found: list[RowProblem] = []
    numeric = np.empty((n, len(spec.numeric)), dtype=np.float64)
    read_numbers = _strict_numbers if strict else _numbers_of
    for j, name in enumerate(spec.numeric):
        numeric[:, j] = read_numbers(name, record.column(name), spec.nullable, found)
    check_numeric(numeric, spec, found)
    read_texts = _strict_texts if strict else _lenient_texts
    texts_read = [
        read_texts(name, record.column(name), spec.nullable, name in spec.dates, found)
        for name in spec.categorical
    ]
    ids, ids_checked = None, False
    if spec.id_column and spec.id_column in present:
        column = record.column(spec.id_column)
        if strict:
            ids, ids_checked = _strict_ids(spec.id_column, column, found)
        else:
            ids = _checked_ids(spec.id_column, column, found)
    batch = Batch(
        ids=ids,
        numeric=numeric,
        categorical=[values for values, _ in texts_read],
        n_rows=n,
        problems=tuple(found),
        levels=tuple(levels for _, levels in texts_read),
        ids_checked=ids_checked,
    )
    if not strict:
        return batch

    def read_ignored(name: str) -> list:
        return record.column(name).to_pylist() if name in columns else [None] * n

    return replace(batch, ignored_columns=ignored_columns(present, spec), read_ignored=read_ignored)


# ------------------------------------------------------------------------------------ numbers


def _numbers_of(name: str, column: Column, nullable: bool, found: list[RowProblem]) -> np.ndarray:
    return numbers(name, column, found)  # missing numbers: check_numeric, as in a file


def numbers(name: str, column: Column, found: list[RowProblem]) -> np.ndarray:
    """A column as float64, NaN where missing; text is read as numbers, other types refused."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if _is_number(kind):
        return _as_numpy(pc.cast(column, pa.float64()))
    if _is_text(kind):
        try:
            return _as_numpy(pc.cast(column, pa.float64()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            out = np.empty(len(column), dtype=np.float64)
            cells = _as_numpy(pc.fill_null(column, ""))
            numbers_from_text(name, cells, out, found)
            return out
    wrong = np.flatnonzero(_as_numpy(pc.is_valid(column)))
    if wrong.size:
        got = _type_name(kind)
        found.append(
            problem("invalid_type", name, wrong, _NUMBERS, got, _NUMBERS, column.to_pylist())
        )
    return np.full(len(column), np.nan)


def _strict_numbers(
    name: str, column: Column, nullable: bool, found: list[RowProblem]
) -> np.ndarray:
    """float64 with NaN for null (and for a value of the wrong type, reported)."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        if not nullable:
            _nulls(name, column, "number", found)
        # safe=False: an integer beyond 2**53 is its nearest float, as JSON's 12345678901234567
        values = pc.cast(column, pa.float64(), safe=False)
        return values.to_numpy(zero_copy_only=False)  # null -> NaN
    if not pa.types.is_null(kind):
        _wrong_type(name, column, _NUMBER_TYPES, found)
    elif not nullable:
        _nulls(name, column, "number", found)
    return np.full(len(column), np.nan)


# -------------------------------------------------------------------------------------- texts


def _lenient_texts(
    name: str, column: Column, nullable: bool, date: bool, found: list[RowProblem]
) -> tuple[np.ndarray, Levels | None]:
    values, levels = _text_values(column)
    if not nullable:
        missing = np.flatnonzero(np.equal(values, None))
        if missing.size:
            found.append(
                problem("null_not_allowed", name, missing, "string", "a missing value", "not null")
            )
    return values, levels


def _strict_texts(
    name: str, column: Column, nullable: bool, date: bool, found: list[RowProblem]
) -> tuple[np.ndarray, Levels | None]:
    """Text as sent (a date column may also be an Arrow date, sent as ISO); another type is a
    problem of every non-null row."""
    kind = column.type
    if date and (pa.types.is_date(kind) or pa.types.is_timestamp(kind)):
        column = pc.strftime(column, "%Y-%m-%d")
        kind = column.type
    if not (_is_text(kind, views=True) or _is_null(kind)):
        _wrong_type(name, column, _TEXT_TYPES, found)
        return np.full(len(column), None, dtype=object), None
    if not nullable:
        _nulls(name, column, "string", found)
    levels = _levels(column)
    return levels.per_row(levels.values, None), levels


def texts(column: Column, few: bool = True) -> np.ndarray:
    """A column as an object array of str, None where missing.

    Numbers become their digits (a whole float too: 1.0 is "1"), dates ISO text. ``few``
    (categoricals): text is decoded once per distinct value, not once per row.
    """
    return _text_values(column, few)[0]


def _text_values(column: Column, few: bool = True) -> tuple[np.ndarray, Levels | None]:
    """``texts`` and, when decoded per distinct value, the column's ``Levels``."""
    kind = column.type
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type) and few:
        levels = _levels(column)  # read as a dictionary (Parquet): the levels are at hand
        return levels.per_row(levels.values, None), levels
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_integer(kind):
        column = pc.cast(column, pa.string())
    elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        column = pc.strftime(column, format="%Y-%m-%d")
    elif not (_is_text(kind) or _is_null(kind)):
        import pandas as pd

        from persona.data.files import as_text  # floats, booleans, ...: as a file is read

        shown = as_text(pd.Series(column.to_pandas(), dtype=object)).to_numpy(dtype=object)
        return np.where(pd.isna(shown), None, shown), None
    if _is_null(kind):
        return np.full(len(column), None, dtype=object), None
    if not few:
        return _as_numpy(column).astype(object, copy=False), None
    levels = _levels(column)
    return levels.per_row(levels.values, None), levels


def _levels(column: Column) -> Levels:
    """A text column's distinct values and each row's position among them (in C)."""
    if _is_null(column.type):
        return Levels(np.empty(0, dtype=object), np.zeros(len(column), dtype=np.intp))
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks != 1 and pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)  # each chunk may have its dictionary
        column = column.combine_chunks()
    encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
    values = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object, copy=False)
    codes = pc.fill_null(encoded.indices, len(values))
    return Levels(values, _as_numpy(codes).astype(np.intp, copy=False))


# ---------------------------------------------------------------------------------------- ids


def _strict_ids(name: str, column: Column, found: list[RowProblem]) -> tuple[object, bool]:
    """The ids as sent (text or integers) and whether the id rules were applied here.

    When no id rule can break on them (measured in Arrow) they stay an Arrow array, answered
    as they came; otherwise a list, for the rules to name the rows. A null id is a problem of
    its row, as in JSON and CSV.
    """
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if not (_is_text(kind, views=True) or pa.types.is_integer(kind)):
        _wrong_type(name, column, _ID_TYPES, found)
        return [None] * len(column), False
    _nulls(name, column, _ID_TYPES, found)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if _ids_keep_the_rules(column):
        return column, True
    return column.to_pylist(), False


def _checked_ids(name: str, column: Column, found: list[RowProblem]) -> np.ndarray | None:
    """The ids as text when an id rule may break on them (else None: the caller reads them
    from the record batch); nulls are problems."""
    if column.null_count:
        missing = np.flatnonzero(_as_numpy(pc.is_null(column)))
        found.append(
            problem(
                "null_not_allowed",
                name,
                missing,
                "string or integer",
                "a missing value",
                "not null",
            )
        )
    if _ids_keep_the_rules(column):
        return None
    return texts(column, few=False)


def _ids_keep_the_rules(column: Column) -> bool:
    """Whether no id rule can break on these ids: integers (digits: never empty, never near
    the length limit), or text whose shortest and longest values keep every rule."""
    kind = column.type
    if pa.types.is_integer(kind):
        return True
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return False
    lengths = pc.min_max(pc.utf8_length(column))
    shortest, longest = lengths["min"].as_py(), lengths["max"].as_py()
    return shortest is None or not _text_rules_may_break(id_rules(), shortest, longest)


def _text_rules_may_break(rules: tuple[Rule, ...], shortest: int, longest: int) -> bool:
    """Whether texts of these lengths may break one of ``rules`` (a rule of another kind: yes)."""
    for rule in rules:
        if isinstance(rule, NonEmpty):
            if shortest == 0:
                return True
        elif isinstance(rule, MaxLength):
            if longest > rule.limit:
                return True
        else:
            return True
    return False


# ------------------------------------------------------------------------------------ helpers


def _wrong_type(name: str, column: Column, expected: str, found: list[RowProblem]) -> None:
    """Every non-null value of a column of the wrong type is a problem of its row."""
    rows = np.flatnonzero(~column.is_null().to_numpy(zero_copy_only=False))
    if rows.size:
        sample = column.slice(int(rows[0]), 1).to_pylist()
        found.append(
            problem(
                "invalid_type",
                name,
                rows,
                expected,
                f"{column.type} column",
                f"type: {expected}",
                {int(rows[0]): sample[0]},
            )
        )


def _nulls(name: str, column: Column, expected: str, found: list[RowProblem]) -> None:
    if column.null_count:
        rows = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
        found.append(problem("null_not_allowed", name, rows, expected, "null", "not null"))


def _as_numpy(array: Column) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.to_numpy(zero_copy_only=False)


def _is_number(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or _is_null(kind)
    )


def _is_text(kind: pa.DataType, views: bool = False) -> bool:
    """A string type; ``views``: a dictionary of strings or a string view also count."""
    if views and pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    check = getattr(pa.types, "is_string_view", None)
    return bool(views and check and check(kind))


def _is_null(kind: pa.DataType) -> bool:
    return pa.types.is_null(kind)


def _type_name(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "boolean"
    return str(kind)
