"""Request bodies of the batch scoring API: pure, fast, strict.

This is the service's hot path, so values are checked by whole columns (one ``set(map(type, ...))``
and one ``numpy`` conversion per column) and rows are only scanned one by one when a column is
already known to be wrong, to name the offending rows. Nothing is silently dropped or coerced: a
malformed request is a :class:`PayloadError`, and a value of the wrong type is a ``RowProblem``
of the batch (the API refuses the batch or flags those rows, as the client asked).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from persona.serving.contract import Batch, InputSpec
from persona.serving.problems import (
    PayloadError,
    RowProblem,
    detail,
    fail,
    json_type,
    problem,
)

try:  # orjson is several times faster; the json module keeps the code working without it
    import orjson
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    orjson = None  # type: ignore[assignment]

try:  # a typed decoder checks a valid records batch in C, in half the time of orjson + checks
    import msgspec
except ImportError:  # pragma: no cover - exercised only where msgspec is absent
    msgspec = None  # type: ignore[assignment]

JSON = "application/json"
CSV = "text/csv"

_NoneType = type(None)
_NUMBER = frozenset({int, float})
_NUMBER_OR_NULL = frozenset({int, float, _NoneType})
_STRING_OR_NULL = frozenset({str, _NoneType})
_ID = frozenset({str, int})
_FLOAT_TEXT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_NAN_TEXT = frozenset({"nan", "+nan", "-nan"})
_INF_TEXT = frozenset({"inf", "infinity"})
_UTF8 = frozenset({"utf-8", "utf8"})
_SPLIT_KEYS = frozenset({"columns", "data", "index"})


# ------------------------------------------------------------------------------------- requests


def _media_type(header: str) -> tuple[str, dict[str, str]]:
    media, *params = header.split(";")
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip().lower()] = value.strip().strip('"').lower()
    return media.strip().lower(), parsed


def parse_request(body: bytes, content_type: str | None, spec: InputSpec) -> Batch:
    """Dispatch on Content-Type; anything but UTF-8 JSON or CSV is refused with 415."""
    media, params = _media_type(content_type or "")
    charset = params.get("charset")
    if media in (JSON, CSV) and (charset is None or charset in _UTF8):
        return parse_json(body, spec) if media == JSON else parse_csv(body, spec)
    got = content_type if content_type else "no Content-Type"
    found = detail(
        "unsupported_media_type",
        "Content-Type",
        (),
        0,
        "application/json or text/csv (charset utf-8 if given)",
        got,
    )
    raise fail("unsupported_media_type", "unsupported request body type", [found], 415)


def _empty(layout: str) -> PayloadError:
    found = detail("empty_batch", None, (), 0, "at least one customer", f"0 rows ({layout})")
    return fail("empty_batch", "the batch is empty", [found])


def _check_size(n: int, spec: InputSpec, layout: str) -> None:
    if n == 0:
        raise _empty(layout)
    if n > spec.max_rows:
        found = detail("too_many_rows", None, (), n, f"at most {spec.max_rows} rows", f"{n} rows")
        raise fail(
            "too_many_rows",
            f"the batch has {n} rows; the limit is {spec.max_rows} per request, split it",
            [found],
            413,
        )


def _check_columns(
    present: Iterable[str],
    n: int,
    spec: InputSpec,
    rows_with: Callable[[str], list[int]] | None = None,
) -> set[str]:
    """Every feature column present; no unknown column unless the contract ignores them."""
    present = set(present)
    details = []
    everyone = range(n)
    for name in spec.features:
        if name not in present:
            role = "numeric" if name in spec.numeric else "categorical"
            details.append(
                detail("missing_columns", name, everyone, n, f"{role} feature column", "absent")
            )
    unknown = sorted(present - spec.known) if spec.extra_columns == "reject" else []
    for name in unknown:
        rows = rows_with(name) if rows_with else everyone
        details.append(
            detail(
                "unknown_columns",
                name,
                rows,
                len(rows),
                f"one of {sorted(spec.known)}",
                "unknown column",
            )
        )
    if details:
        missing = [d["field"] for d in details if d["kind"] == "missing_columns"]
        parts = []
        if missing:
            parts.append(f"missing feature columns {missing}")
        if unknown:
            parts.append(f"unknown columns {unknown}")
        kind = "missing_columns" if missing else "unknown_columns"
        raise PayloadError(kind, "; ".join(parts), details)
    return present


# ----------------------------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _invalid_encoding(body: bytes) -> PayloadError:
    """A body that is not UTF-8, with the byte offset of the first bad byte."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        got, position = f"byte 0x{body[exc.start]:02x} ({exc.reason})", exc.start
    else:  # pragma: no cover - callers only come here after a decode error
        got, position = "text the decoder refused", 0
    found = detail("invalid_encoding", None, (), 0, "UTF-8 text", got, position=position)
    return fail("invalid_encoding", f"body is not valid UTF-8 at byte {position}", [found])


def _load_json(body: bytes) -> Any:
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]
    if orjson is None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid_encoding(body) from None
    try:
        if orjson is not None:
            return orjson.loads(body)
        return json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:  # orjson.JSONDecodeError is a subclass
        if "UTF-8" in exc.msg or "utf-8" in exc.msg:
            raise _invalid_encoding(body) from None
        found = detail(
            "malformed_json",
            None,
            (),
            0,
            "valid JSON",
            exc.msg,
            line=exc.lineno,
            column=exc.colno,
            position=exc.pos,
        )
        message = f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise PayloadError("malformed_json", message, [found]) from None
    except ValueError as exc:  # invalid UTF-8 or NaN/Infinity without orjson
        found = detail("malformed_json", None, (), 0, "valid JSON", str(exc))
        raise PayloadError("malformed_json", f"body is not valid JSON: {exc}", [found]) from None


def parse_json(body: bytes, spec: InputSpec) -> Batch:
    """Records, ``{"customers": [...]}``, split, MLflow's dataframe_* wrappers or columnar."""
    if not body or body.isspace():
        raise _empty("empty body")
    batch = _typed_records(body, spec)
    if batch is not None:
        return batch
    doc = _load_json(body)
    if isinstance(doc, list):
        return _from_records(doc, spec)
    if not isinstance(doc, dict):
        found = detail(
            "invalid_layout", None, (), 0, "an array of records or an object", json_type(doc)
        )
        raise fail("invalid_layout", "unrecognised JSON body", [found])
    if len(doc) == 1:
        ((key, value),) = doc.items()
        if key in ("customers", "dataframe_records") and key not in spec.known:
            if not isinstance(value, list):
                raise _layout_error(key, "an array of records", value)
            return _from_records(value, spec)
        if key == "dataframe_split" and key not in spec.known:
            if not isinstance(value, dict) or not {"columns", "data"} <= set(value) <= _SPLIT_KEYS:
                raise _layout_error(
                    key, 'an object {"columns": [...], "data": [[...], ...]}', value
                )
            return _from_split(value, spec)
    if {"columns", "data"} <= set(doc) <= _SPLIT_KEYS and not (set(doc) & spec.known):
        return _from_split(doc, spec)
    return _from_columnar(doc, spec)


def _typed_records(body: bytes, spec: InputSpec) -> Batch | None:
    """A valid records batch without per-value Python checks; None sends it the general way.

    The decoder has already checked every type and refused unknown keys, so what is left is a
    column-wise copy. Any record lacking a key (UNSET) hands the batch to the general path,
    which tells a column absent from the whole batch from a value absent from one record.
    """
    decoder = spec.records_decoder
    if decoder is None:
        return None
    try:
        records = decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    except UnicodeDecodeError:
        raise _invalid_encoding(body) from None
    if not isinstance(records, list):
        records = records.customers
    n = len(records)
    if n == 0 or n > spec.max_rows:
        return None
    unset = msgspec.UNSET
    numeric = np.empty((n, len(spec.numeric)), dtype=np.float64)
    for j, name in enumerate(spec.numeric):
        try:
            numeric[:, j] = list(map(attrgetter(name), records))  # None becomes NaN
        except TypeError:  # an UNSET value
            return None
    categorical = []
    for name in spec.categorical:
        values = list(map(attrgetter(name), records))
        if unset in values:
            return None
        array = np.empty(n, dtype=object)
        array[:] = values
        categorical.append(array)
    ids = None
    if spec.id_column:
        ids = list(map(attrgetter(spec.id_column), records))
        if unset in ids:
            if ids.count(unset) != n:
                return None
            ids = None
    if not (np.isfinite(numeric) if not spec.nullable else ~np.isinf(numeric)).all():
        return None  # 1e999 decodes to infinity; the general path reports it
    passthrough = {}
    for name in spec.ignored:
        values = list(map(attrgetter(name), records))
        if values.count(unset) != n:
            passthrough[name] = [None if v is unset else v for v in values]
    return Batch(
        ids=ids,
        numeric=numeric,
        categorical=categorical,
        n_rows=n,
        ignored_columns=tuple(sorted(passthrough)),
        passthrough=passthrough,
    )


def _layout_error(field: str, expected: str, value: Any) -> PayloadError:
    got = json_type(value)
    if isinstance(value, dict):
        got = f"object with keys {sorted(value)[:10]}"
    found = detail("invalid_layout", field, (), 0, expected, got)
    return fail("invalid_layout", "unrecognised JSON body", [found])


def _records_must_be(records: list, wanted: type, expected: str, layout: str) -> None:
    """Every element is an object (records) or an array (split rows)."""
    if set(map(type, records)) == {wanted}:
        return
    bad = [i for i, r in enumerate(records) if type(r) is not wanted]
    got = ", ".join(sorted({json_type(records[i]) for i in bad}))
    found = detail("invalid_record", None, bad, len(bad), expected, got)
    raise fail("invalid_record", f"{layout}: every row must be {expected}", [found])


def _from_records(records: list, spec: InputSpec) -> Batch:
    _check_size(len(records), spec, "records")
    _records_must_be(records, dict, "an object", "records")
    n = len(records)
    keys: set[str] = set().union(*records)
    _check_columns(keys, n, spec, lambda name: [i for i, r in enumerate(records) if name in r])
    if set(map(len, records)) == {len(keys)}:  # every record has every key: C-speed lookups

        def column(name: str) -> Sequence:
            return list(map(itemgetter(name), records))

    else:  # an absent id is a problem of its row, an absent feature one of the request
        _every_record_has_the_features(records, spec)

        def column(name: str) -> Sequence:
            return [r.get(name) for r in records]

    return _assemble(n, keys, column, spec)


def _every_record_has_the_features(records: list, spec: InputSpec) -> None:
    """The published contract requires each feature in each record (null when missing)."""
    details = []
    for name in spec.features:
        absent = [i for i, r in enumerate(records) if name not in r]
        if absent:
            details.append(
                detail(
                    "missing_columns",
                    name,
                    absent,
                    len(absent),
                    "the key in every record (null for a missing value)",
                    "absent",
                )
            )
    if details:
        raise fail("missing_columns", "records lack feature keys", details)


def _from_split(doc: dict, spec: InputSpec) -> Batch:
    columns, data = doc["columns"], doc["data"]
    if not isinstance(columns, list) or set(map(type, columns)) - {str}:
        raise _layout_error("columns", "an array of column names (strings)", columns)
    if not isinstance(data, list):
        raise _layout_error("data", "an array of rows (arrays)", data)
    _check_unique(columns)
    _check_size(len(data), spec, "split")
    _records_must_be(data, list, "an array", "split data")
    width = len(columns)
    if set(map(len, data)) != {width}:
        bad = [i for i, row in enumerate(data) if len(row) != width]
        lengths = sorted({len(data[i]) for i in bad})
        found = detail(
            "ragged_rows",
            None,
            bad,
            len(bad),
            f"{width} values per row (one per column)",
            f"rows of {', '.join(map(str, lengths))} values",
        )
        raise fail("ragged_rows", "split rows must match the columns", [found])
    present = _check_columns(columns, len(data), spec)
    position = {name: i for i, name in enumerate(columns)}

    def column(name: str) -> Sequence:
        return list(map(itemgetter(position[name]), data))

    return _assemble(len(data), present, column, spec)


def _check_unique(columns: Sequence[str]) -> None:
    repeated = sorted(name for name, n in Counter(columns).items() if n > 1)
    if repeated:
        details = [
            detail(
                "duplicate_columns",
                name,
                (),
                0,
                "each column once",
                f"{Counter(columns)[name]} columns named {name!r}",
            )
            for name in repeated
        ]
        raise fail("duplicate_columns", "columns appear more than once", details)


def _from_columnar(doc: dict, spec: InputSpec) -> Batch:
    if not doc:
        raise _empty("empty object")
    not_arrays = [name for name, values in doc.items() if not isinstance(values, list)]
    if not_arrays:
        details = [
            detail(
                "invalid_layout",
                name,
                (),
                0,
                "an array of values (columnar layout)",
                json_type(doc[name]),
            )
            for name in not_arrays
        ]
        title = (
            "an object must be columnar ({column: [values]}), split ({columns, data}) or "
            '{"customers": [records]}; to score one customer send [record]'
        )
        raise fail("invalid_layout", title, details)
    lengths = Counter(map(len, doc.values()))
    if len(lengths) > 1:
        common = lengths.most_common(1)[0][0]
        details = [
            detail(
                "ragged_rows",
                name,
                (),
                0,
                f"{common} values, like the other columns",
                f"{len(values)} values",
            )
            for name, values in doc.items()
            if len(values) != common
        ]
        raise fail("ragged_rows", "columns have different lengths", details)
    n = next(iter(lengths))
    _check_size(n, spec, "columnar")
    present = _check_columns(doc, n, spec)
    return _assemble(n, present, doc.__getitem__, spec)


def _bad_values(
    name: str, values: Sequence, allowed: frozenset, expected: str, found: list[RowProblem]
) -> list[int]:
    """Report the values of a column whose type set is wrong: wrong types, then nulls.

    Returns the rows reported, whose values the batch then holds as missing.
    """
    wrong = [i for i, v in enumerate(values) if type(v) not in allowed and v is not None]
    if wrong:
        got = ", ".join(sorted({json_type(values[i]) for i in wrong}))
        found.append(
            problem("invalid_type", name, wrong, expected, got, f"type: {expected}", values)
        )
    nulls: list[int] = []
    if _NoneType not in allowed:
        nulls = [i for i, v in enumerate(values) if v is None]
        if nulls:
            found.append(problem("null_not_allowed", name, nulls, expected, "null", "not null"))
    return wrong + nulls


def _assemble(
    n: int,
    present: set[str],
    column: Callable[[str], Sequence],
    spec: InputSpec,
) -> Batch:
    """Arrays from Python values (JSON layouts); a column is scanned only if it is wrong.

    A value of the wrong type becomes a missing value in the arrays and a problem of its row.
    """
    found: list[RowProblem] = []
    numeric = np.empty((n, len(spec.numeric)), dtype=np.float64)
    allowed = _NUMBER_OR_NULL if spec.nullable else _NUMBER
    expected = "number or null" if spec.nullable else "number"
    for j, name in enumerate(spec.numeric):
        values = column(name)
        if set(map(type, values)) <= _NUMBER_OR_NULL:
            try:
                numeric[:, j] = values  # None becomes NaN
                continue
            except (OverflowError, ValueError, TypeError):
                huge = [i for i, v in enumerate(values) if type(v) is int and _overflows(v)]
                found.append(
                    problem(
                        "invalid_type",
                        name,
                        huge,
                        "a number within float64 range",
                        "integer too large",
                        "a number within float64 range",
                    )
                )
        else:
            _bad_values(name, values, allowed, expected, found)
        numeric[:, j] = [_float_or_nan(v) for v in values]
    _check_numeric(numeric, spec, found)

    allowed = _STRING_OR_NULL if spec.nullable else frozenset({str})
    expected = "string or null" if spec.nullable else "string"
    categorical = []
    for name in spec.categorical:
        values = column(name)
        array = np.empty(n, dtype=object)
        array[:] = values
        if not set(map(type, values)) <= allowed:
            array[_bad_values(name, values, allowed, expected, found)] = None
        categorical.append(array)

    ids = None
    if spec.id_column and spec.id_column in present:
        values = column(spec.id_column)
        ids = list(values)
        if not set(map(type, values)) <= _ID:
            for i in _bad_values(spec.id_column, values, _ID, "string or integer", found):
                ids[i] = None
    ignored = _ignored(present, spec)
    return Batch(
        ids=ids,
        numeric=numeric,
        categorical=categorical,
        n_rows=n,
        problems=tuple(found),
        ignored_columns=ignored,
        passthrough={c: list(column(c)) for c in ignored},
    )


def _ignored(present: set[str], spec: InputSpec) -> tuple[str, ...]:
    """The columns sent that the model does not take (declared ones, or any when allowed)."""
    return tuple(sorted(present - spec.known.difference(spec.ignored)))


def _float_or_nan(value: Any) -> float:
    """A number of a column being reported: anything that is not a finite float is missing."""
    if type(value) in _NUMBER:
        try:
            return float(value)
        except OverflowError:
            return np.nan
    return np.nan


def _overflows(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _check_numeric(numeric: np.ndarray, spec: InputSpec, found: list[RowProblem]) -> None:
    """Infinity is never a feature value (it is then missing); NaN only when nullable."""
    bad = ~np.isfinite(numeric) if not spec.nullable else np.isinf(numeric)
    if not bad.any():
        return
    for j in np.flatnonzero(bad.any(axis=0)):
        name = spec.numeric[j]
        column = numeric[:, j]
        infinite = np.flatnonzero(np.isinf(column))
        if infinite.size:
            found.append(
                problem(
                    "invalid_type",
                    name,
                    infinite,
                    "a finite number",
                    "infinity",
                    "a finite number",
                    [repr(float(v)) for v in column],
                )
            )
            column[infinite] = np.nan
        if not spec.nullable:
            missing = np.flatnonzero(np.isnan(column))
            missing = np.setdiff1d(missing, infinite)
            if missing.size:
                found.append(
                    problem("null_not_allowed", name, missing, "number", "null", "not null")
                )


# ------------------------------------------------------------------------------------------ CSV


def _malformed_csv(message: str, **where: Any) -> PayloadError:
    found = detail("malformed_csv", None, (), 0, "CSV with a header row", message, **where)
    return PayloadError("malformed_csv", f"body is not valid CSV: {message}", [found])


def parse_csv(body: bytes, spec: InputSpec) -> Batch:
    """UTF-8 CSV with a header row; an empty cell is a missing value."""
    import pandas as pd  # the C tokenizer is the fastest CSV reader at hand; kept off import time

    if not body or body.isspace():
        raise _empty("empty body")
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid_encoding(body) from None
    try:
        header = next(csv.reader(io.StringIO(text), strict=True))
    except (csv.Error, StopIteration) as exc:
        raise _malformed_csv(f"header row: {exc}", line=1) from None
    if not header or "" in header:
        empty = [i for i, name in enumerate(header) if name == ""]
        raise _malformed_csv(f"header row has empty column names at positions {empty}", line=1)
    _check_unique(header)
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
    if not numbers_ok:  # read every cell as text; _csv_numbers decides and names the rows
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
        raise _empty("CSV header only")
    # pandas pads short rows with missing values; count the fields so a short row is an error
    if len(header) > 1 and ('"' in text or text.count(",") != (len(header) - 1) * (n + 1)):
        _raise_ragged_csv(text, len(header))
    present = _check_columns(header, n, spec)
    found: list[RowProblem] = []
    if numbers_ok:
        matrix = frame[list(spec.numeric)].to_numpy(dtype=np.float64)
    else:
        matrix = np.empty((n, len(spec.numeric)), dtype=np.float64)
        for j, name in enumerate(spec.numeric):
            _csv_numbers(name, frame[name].to_numpy(), matrix[:, j], found)
    _check_numeric(matrix, spec, found)
    categorical = [
        _csv_text(frame, name, spec.nullable, "string", found) for name in spec.categorical
    ]
    ids = None
    if spec.id_column and spec.id_column in present:
        ids = _csv_text(frame, spec.id_column, False, "string or integer", found).tolist()
    ignored = _ignored(present, spec)
    return Batch(
        ids=ids,
        numeric=matrix,
        categorical=categorical,
        n_rows=n,
        problems=tuple(found),
        ignored_columns=ignored,
        passthrough={c: _csv_text(frame, c, True, "", []).tolist() for c in ignored},
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


def _csv_numbers(name: str, cells: np.ndarray, out: np.ndarray, found: list[RowProblem]) -> None:
    """Slow path, only after pandas refused a column: every cell is a float, empty or nan."""
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


# ------------------------------------------------------------------------------------ responses


def negotiate(accept: str | None) -> str:
    """The response type for an Accept header: JSON unless CSV is preferred; else 406."""
    if accept is None or not accept.strip():
        return JSON
    ranges = []
    for part in accept.split(","):
        media, params = _media_type(part)
        if not media:
            continue
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            continue
        ranges.append((media, min(max(q, 0.0), 1.0)))
    best: tuple[float, int, int] | None = None
    choice = None
    for preference, offer in enumerate((JSON, CSV)):
        kind = offer.split("/")[0]
        matches = [
            (3 if media == offer else 2 if media == f"{kind}/*" else 1, q)
            for media, q in ranges
            if media in (offer, f"{kind}/*", "*/*")
        ]
        if not matches:
            continue
        specificity, q = max(matches)  # the most specific range decides an offer's quality
        rank = (q, specificity, -preference)
        if q > 0 and (best is None or rank > best):
            best, choice = rank, offer
    if choice is None:
        found = detail("not_acceptable", "Accept", (), 0, "application/json or text/csv", accept)
        raise fail("not_acceptable", "no acceptable response type", [found], 406)
    return choice
