"""CSV request bodies: UTF-8 with a header row; an empty cell is a missing value.

pandas' C tokenizer reads the body (the fastest CSV reader at hand); a column it cannot read as
numbers is read again as text and checked cell by cell, to name the rows.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from persona.serving.columns import (
    check_columns,
    check_numeric,
    check_unique,
    empty_batch,
    ignored_columns,
    invalid_encoding,
)
from persona.serving.contract import Batch, InputSpec
from persona.serving.problems import PayloadError, RowProblem, detail, fail, problem

_FLOAT_TEXT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_NAN_TEXT = frozenset({"nan", "+nan", "-nan"})
_INF_TEXT = frozenset({"inf", "infinity"})


def _malformed_csv(message: str, **where: Any) -> PayloadError:
    found = detail("malformed_csv", None, (), 0, "CSV with a header row", message, **where)
    return PayloadError("malformed_csv", f"body is not valid CSV: {message}", [found])


def parse_csv(body: bytes, spec: InputSpec) -> Batch:
    """UTF-8 CSV with a header row; an empty cell is a missing value."""
    import pandas as pd  # the C tokenizer is the fastest CSV reader at hand; kept off import time

    if not body or body.isspace():
        raise empty_batch("empty body")
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_encoding(body) from None
    try:
        header = next(csv.reader(io.StringIO(text), strict=True))
    except (csv.Error, StopIteration) as exc:
        raise _malformed_csv(f"header row: {exc}", line=1) from None
    if not header or "" in header:
        empty = [i for i, name in enumerate(header) if name == ""]
        raise _malformed_csv(f"header row has empty column names at positions {empty}", line=1)
    check_unique(header)
    numeric = set(spec.numeric)
    dtype = {name: np.float64 if name in numeric else object for name in header}
    frame = None
    try:
        frame = pd.read_csv(
            io.BytesIO(body),  # pandas reads bytes faster than text
            dtype=dtype,
            keep_default_na=False,
            na_values=[""],
            nrows=spec.max_rows + 1,
            engine="c",
        )
    except pd.errors.ParserError as exc:
        _raise_ragged_csv(text, len(header))
        raise _malformed_csv(str(exc).strip()) from None
    except ValueError:  # a numeric cell pandas could not read: handled below, cell by cell
        pass
    numbers_ok = frame is not None and not _booleans_read_as_numbers(text, frame, spec.numeric)
    if not numbers_ok:  # read every cell as text; numbers_from_text decides and names the rows
        frame = pd.read_csv(
            io.BytesIO(body),
            dtype=object,
            keep_default_na=False,
            na_filter=False,
            nrows=spec.max_rows + 1,
            engine="c",
        )
    n = len(frame)
    if n > spec.max_rows:
        found = detail(
            "too_many_rows",
            None,
            (),
            n,
            f"at most {spec.max_rows} rows",
            f"more than {spec.max_rows} rows (reading stopped there)",
        )
        raise fail(
            "too_many_rows",
            f"the batch has more than {spec.max_rows} rows, the limit per request; split it",
            [found],
            413,
        )
    if n == 0:
        raise empty_batch("CSV header only")
    # pandas pads short rows with missing values; count the fields so a short row is an error
    if len(header) > 1 and ('"' in text or text.count(",") != (len(header) - 1) * (n + 1)):
        _raise_ragged_csv(text, len(header))
    present = check_columns(header, n, spec)
    found: list[RowProblem] = []
    if numbers_ok:
        matrix = frame[list(spec.numeric)].to_numpy(dtype=np.float64)
    else:
        matrix = np.empty((n, len(spec.numeric)), dtype=np.float64)
        for j, name in enumerate(spec.numeric):
            numbers_from_text(name, frame[name].to_numpy(), matrix[:, j], found)
    check_numeric(matrix, spec, found)
    categorical = [
        _csv_text(frame, name, spec.nullable, "string", found) for name in spec.categorical
    ]
    ids = None
    if spec.id_column and spec.id_column in present:
        ids = _csv_text(frame, spec.id_column, False, "string or integer", found).tolist()
    ignored = ignored_columns(present, spec)
    return Batch(
        ids=ids,
        numeric=matrix,
        categorical=categorical,
        n_rows=n,
        problems=tuple(found),
        ignored_columns=ignored,
        read_ignored=lambda name: _csv_text(frame, name, True, "", []).tolist(),
    )


def _booleans_read_as_numbers(text: str, frame: Any, numeric: Sequence[str]) -> bool:
    """pandas reads a column of only True/False as 1.0/0.0; such a body is re-read as text."""
    if not any(word in text for word in ("True", "TRUE", "true", "False", "FALSE", "false")):
        return False
    for name in numeric:
        if name in frame:
            values = frame[name].to_numpy(dtype=np.float64)
            if np.isin(values[~np.isnan(values)], (0.0, 1.0)).all():
                return True
    return False


def _raise_ragged_csv(text: str, width: int) -> None:
    """Find the data rows (blank lines skipped) whose field count differs from the header's."""
    try:
        rows = csv.reader(io.StringIO(text), strict=True)
        next(rows)
        bad, lengths, index = [], set(), 0
        for fields in rows:
            if not fields:
                continue
            if len(fields) != width:
                bad.append(index)
                lengths.add(len(fields))
            index += 1
    except csv.Error as exc:
        raise _malformed_csv(f"line {rows.line_num}: {exc}", line=rows.line_num) from None
    if bad:
        found = detail(
            "ragged_rows",
            None,
            bad,
            len(bad),
            f"{width} fields per row (one per header column)",
            f"rows of {', '.join(map(str, sorted(lengths)))} fields",
        )
        raise fail("ragged_rows", "CSV rows must match the header", [found])


def numbers_from_text(
    name: str, cells: np.ndarray, out: np.ndarray, found: list[RowProblem]
) -> None:
    """Slow path, only after a reader refused a column of text as numbers: every cell is a
    float, empty or nan; the others are named as `invalid_type` rows."""
    wrong = []
    for i, cell in enumerate(cells):
        text = cell.strip()
        if not text or text.lower() in _NAN_TEXT:
            out[i] = np.nan
        elif _FLOAT_TEXT.fullmatch(text) or text.lower().lstrip("+-") in _INF_TEXT:
            out[i] = float(text)  # infinity is refused by _check_numeric, as on the fast path
        else:
            out[i] = np.nan
            wrong.append(i)
    if wrong:
        expected = "a number (decimal text) or an empty cell"
        found.append(
            problem(
                "invalid_type", name, wrong, expected, "text that is not a number", expected, cells
            )
        )


def _csv_text(
    frame: Any, name: str, nullable: bool, expected: str, found: list[RowProblem]
) -> np.ndarray:
    """An object column with None for empty cells (pandas gives NaN, or "" without NA parsing)."""
    series = frame[name]
    array = series.to_numpy(dtype=object, copy=True)
    missing = series.isna().to_numpy() | (array == "")
    if missing.any():
        array[missing] = None
        if not nullable:
            rows = np.flatnonzero(missing)
            found.append(
                problem("null_not_allowed", name, rows, expected, "empty cell", "not null")
            )
    return array
