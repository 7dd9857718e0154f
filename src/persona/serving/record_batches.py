"""Apache Arrow record batches as the arrays of the scoring contract (``contract.Batch``).

The in-process batch job (``persona.flows.score_stream``) reads Parquet and CSV files as Arrow
record batches; this turns one into the arrays the fast path scores, reporting a value of the
wrong type as the JSON and CSV parsers of the API do (a ``RowProblem`` naming field and rows),
so the contract's rules then apply unchanged. Columns are converted by Arrow's compute kernels,
never row by row in Python, except where a value is wrong and its row must be named.

What a value may be follows how ``persona.data.files`` reads a user's file: numbers of any
numeric type (or text that reads as a number), and text for categoricals, dates and ids, where
a whole number stands for its digits (a level ``1`` is the text ``"1"``, an integer id its
digits).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from persona.data.rules import MaxLength, NonEmpty, Rule, id_rules
from persona.serving.columns import check_columns, check_numeric
from persona.serving.contract import Batch, InputSpec
from persona.serving.payload_csv import numbers_from_text
from persona.serving.problems import RowProblem, problem

_NUMBERS = "a number"


def batch_from_arrow(record: pa.RecordBatch | pa.Table, spec: InputSpec) -> Batch:
    """One record batch under ``spec``: every feature column present (else a PayloadError
    naming them), values of the wrong type reported as problems of their rows.

    Columns the contract does not know are left alone: a file carries more than a request.
    The ids are measured in Arrow first (nulls, shortest and longest text): only when one of
    them may break an id rule are they turned into Python text for the rules to name the rows;
    otherwise ``Batch.ids`` is None and the caller reads them from the record batch.
    """
    n = record.num_rows
    names = record.schema.names
    check_columns([name for name in names if name in spec.known], n, spec)
    found: list[RowProblem] = []
    numeric = np.empty((n, len(spec.numeric)), dtype=np.float64)
    for j, name in enumerate(spec.numeric):
        numeric[:, j] = numbers(name, record.column(name), found)
    check_numeric(numeric, spec, found)
    categorical = [
        _text_or_null(name, texts(record.column(name)), spec.nullable, "string", found)
        for name in spec.categorical
    ]
    ids = None
    if spec.id_column and spec.id_column in names:
        ids = _checked_ids(spec.id_column, record.column(spec.id_column), found)
    return Batch(ids=ids, numeric=numeric, categorical=categorical, n_rows=n, problems=tuple(found))


def numbers(name: str, column: pa.Array | pa.ChunkedArray, found: list[RowProblem]) -> np.ndarray:
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


def _checked_ids(
    name: str, column: pa.Array | pa.ChunkedArray, found: list[RowProblem]
) -> np.ndarray | None:
    """The ids as text when an id rule may break on them (else None); nulls are problems."""
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
    kind = column.type
    if pa.types.is_integer(kind):
        return None  # digits: never empty, never near the length limit
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        lengths = pc.min_max(pc.utf8_length(column))
        shortest, longest = lengths["min"].as_py(), lengths["max"].as_py()
        if shortest is None or not _text_rules_may_break(id_rules(), shortest, longest):
            return None
    return texts(column, few=False)


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


def texts(column: pa.Array | pa.ChunkedArray, few: bool = True) -> np.ndarray:
    """A column as an object array of str, None where missing.

    Numbers become their digits (a whole float too: 1.0 is "1"), dates ISO text. ``few``
    (categoricals): text is decoded once per distinct value, not once per row.
    """
    kind = column.type
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type) and few:
        return _decoded(column)  # read as a dictionary (Parquet): the levels are at hand
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
        return np.where(pd.isna(shown), None, shown)
    if _is_null(kind):
        return np.full(len(column), None, dtype=object)
    if not few:
        return _as_numpy(column).astype(object, copy=False)
    return _decoded(pc.dictionary_encode(column))


def _decoded(encoded: pa.DictionaryArray | pa.ChunkedArray) -> np.ndarray:
    """A dictionary-encoded text column as an object array: one Python text per level."""
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    levels = np.append(encoded.dictionary.to_numpy(zero_copy_only=False), None).astype(object)
    codes = pc.fill_null(encoded.indices, len(levels) - 1)
    return levels[_as_numpy(codes)]


def _text_or_null(
    name: str, values: np.ndarray, nullable: bool, expected: str, found: list[RowProblem]
) -> np.ndarray:
    if not nullable:
        missing = np.flatnonzero(np.equal(values, None))
        if missing.size:
            found.append(
                problem("null_not_allowed", name, missing, expected, "a missing value", "not null")
            )
    return values


def _as_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
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


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_null(kind: pa.DataType) -> bool:
    return pa.types.is_null(kind)


def _type_name(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "boolean"
    return str(kind)
