"""JSON request bodies: records, ``{"customers": [...]}``, split, MLflow's wrappers, columnar.

A valid records batch is decoded by a typed msgspec decoder built from the contract (types
checked in C); anything it refuses goes the general way, which checks whole columns and scans
rows only when a column is already known to be wrong, to name them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from persona.serving.columns import (
    check_columns,
    check_numeric,
    check_size,
    check_unique,
    empty_batch,
    ignored_columns,
    invalid_encoding,
)
from persona.serving.contract import Batch, InputSpec
from persona.serving.problems import PayloadError, RowProblem, detail, fail, json_type, problem

try:  # orjson is several times faster; the json module keeps the code working without it
    import orjson
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    orjson = None  # type: ignore[assignment]

try:  # a typed decoder checks a valid records batch in C, in half the time of orjson + checks
    import msgspec
except ImportError:  # pragma: no cover - exercised only where msgspec is absent
    msgspec = None  # type: ignore[assignment]

_NoneType = type(None)
_NUMBER = frozenset({int, float})
_NUMBER_OR_NULL = frozenset({int, float, _NoneType})
_STRING_OR_NULL = frozenset({str, _NoneType})
_ID = frozenset({str, int})
_SPLIT_KEYS = frozenset({"columns", "data", "index"})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(body: bytes) -> Any:
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]
    if orjson is None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_encoding(body) from None
    try:
        if orjson is not None:
            return orjson.loads(body)
        return json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:  # orjson.JSONDecodeError is a subclass
        if "UTF-8" in exc.msg or "utf-8" in exc.msg:
            raise invalid_encoding(body) from None
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
        raise empty_batch("empty body")
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
        raise invalid_encoding(body) from None
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
    ignored = tuple(sorted(name for name in spec.ignored if _sent(name, records)))

    def read_ignored(name: str) -> list:
        return [None if v is unset else v for v in map(attrgetter(name), records)]

    return Batch(
        ids=ids,
        numeric=numeric,
        categorical=categorical,
        n_rows=n,
        ignored_columns=ignored,
        read_ignored=read_ignored,
    )


def _sent(name: str, records: list) -> bool:
    """Does any record carry this (ignored) key? The first record usually tells."""
    getter = attrgetter(name)
    if getter(records[0]) is not msgspec.UNSET:
        return True
    return list(map(getter, records)).count(msgspec.UNSET) != len(records)


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
    check_size(len(records), spec, "records")
    _records_must_be(records, dict, "an object", "records")
    n = len(records)
    keys: set[str] = set().union(*records)
    check_columns(keys, n, spec, lambda name: [i for i, r in enumerate(records) if name in r])
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
    check_unique(columns)
    check_size(len(data), spec, "split")
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
    present = check_columns(columns, len(data), spec)
    position = {name: i for i, name in enumerate(columns)}

    def column(name: str) -> Sequence:
        return list(map(itemgetter(position[name]), data))

    return _assemble(len(data), present, column, spec)


def _from_columnar(doc: dict, spec: InputSpec) -> Batch:
    if not doc:
        raise empty_batch("empty object")
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
    check_size(n, spec, "columnar")
    present = check_columns(doc, n, spec)
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
    check_numeric(numeric, spec, found)

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
    ignored = ignored_columns(present, spec)
    return Batch(
        ids=ids,
        numeric=numeric,
        categorical=categorical,
        n_rows=n,
        problems=tuple(found),
        ignored_columns=ignored,
        read_ignored=lambda name: list(column(name)),
    )


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
