"""Request and response bodies of the batch scoring API: pure, fast, strict.

This is the service's hot path, so values are checked by whole columns (one ``set(map(type, ...))``
and one ``numpy`` conversion per column) and rows are only scanned one by one when a column is
already known to be wrong, to name the offending rows. Nothing is silently dropped or coerced:
every problem becomes a :class:`PayloadError` whose details name the field, the rows (0-based
position in the batch), what was expected and what was got.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import islice, repeat
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from persona.data.schema import DatasetSchema
from persona.errors import ConfigurationError, InvalidInputError

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
MAX_ROWS_REPORTED = 5  # row indexes listed per detail; "count" always has the total
MAX_DETAILS_IN_MESSAGE = 5
PREDICTION_COLUMNS = ("persona_id", "persona_name", "confidence", "distance")
CSV_MODEL_COLUMNS = ("model_name", "model_version")

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


# --------------------------------------------------------------------------------------- errors


class PayloadError(InvalidInputError):
    """A request the service refuses; ``to_dict`` is the JSON error body, ``status`` its code."""

    def __init__(
        self,
        kind: str,
        message: str,
        details: Sequence[dict[str, Any]] = (),
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = list(details)
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        """The error body clients get: one kind to branch on, details to fix the batch."""
        return {"error": {"kind": self.kind, "message": self.message, "details": self.details}}


def _detail(
    kind: str,
    field: str | None,
    rows: Iterable[int],
    count: int,
    expected: Any,
    got: Any,
    **extra: Any,
) -> dict[str, Any]:
    """One finding; ``rows`` is cut to the first few, ``count`` keeps the total."""
    first = [int(i) for i in islice(rows, MAX_ROWS_REPORTED)]
    return {
        "kind": kind,
        "field": field,
        "rows": first,
        "count": int(count),
        "expected": expected,
        "got": got,
        **extra,
    }


def _describe(detail: dict[str, Any]) -> str:
    where = f"{detail['field']!r}" if detail["field"] is not None else "batch"
    rows = ""
    if detail["rows"]:
        more = ", ..." if detail["count"] > len(detail["rows"]) else ""
        noun = "row" if detail["count"] == 1 else "rows"
        rows = f" ({detail['count']} {noun}: {', '.join(map(str, detail['rows']))}{more})"
    return f"{where}{rows}: expected {detail['expected']}, got {detail['got']}"


def _fail(
    kind: str, title: str, details: Sequence[dict[str, Any]], status: int = 400
) -> PayloadError:
    shown = "; ".join(_describe(d) for d in details[:MAX_DETAILS_IN_MESSAGE])
    if len(details) > MAX_DETAILS_IN_MESSAGE:
        shown += f"; and {len(details) - MAX_DETAILS_IN_MESSAGE} more"
    return PayloadError(kind, f"{title}: {shown}" if shown else title, details, status)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _example(value: Any) -> Any:
    """A JSON-safe, short sample of an offending value (containers are named, not echoed)."""
    if isinstance(value, str):
        return value if len(value) <= 40 else value[:37] + "..."
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _json_type(value)


# ----------------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class InputSpec:
    """The request contract of the served model: which columns a customer record carries."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    id_column: str | None = "customer_id"
    ignored: tuple[str, ...] = ()  # accepted and dropped (e.g. snapshot_month, true_persona)
    max_rows: int = 100_000
    nullable: bool = True  # may feature values be null/missing? (the model imputes)

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

    @classmethod
    def from_schema(cls, schema: DatasetSchema, max_rows: int) -> InputSpec:
        """The contract of a dataset schema; its month and truth columns are accepted, dropped."""
        ignored = tuple(c for c in (schema.month_column, schema.truth_column) if c)
        return cls(
            numeric=tuple(schema.numeric),
            categorical=tuple(schema.categorical),
            id_column=schema.id_column,
            ignored=ignored,
            max_rows=max_rows,
        )

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

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
            fields.append((self.id_column, int | str | unset, msgspec.UNSET))
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

    @cached_property
    def known(self) -> frozenset[str]:
        """Every column a request may carry."""
        extra = (self.id_column,) if self.id_column else ()
        return frozenset((*self.features, *self.ignored, *extra))

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema (OpenAPI 3.0 dialect) of one customer record, for the API document."""
        null = {"nullable": True} if self.nullable else {}
        properties: dict[str, Any] = {}
        if self.id_column:
            properties[self.id_column] = {
                "oneOf": [{"type": "string"}, {"type": "integer"}],
                "description": "Optional customer id, echoed in the response as given.",
            }
        for name in self.numeric:
            properties[name] = {"type": "number", **null}
        for name in self.categorical:
            properties[name] = {"type": "string", **null}
        for name in self.ignored:
            properties[name] = {"description": "Accepted and ignored."}
        schema: dict[str, Any] = {
            "type": "object",
            "title": "Customer",
            "properties": properties,
            "additionalProperties": False,
        }
        if not self.nullable:
            schema["required"] = list(self.features)  # OpenAPI 3.0: never an empty list
        else:
            schema["description"] = (
                "Every feature column must be present in the batch; a value may be null or "
                "absent from a record, and the model imputes it."
            )
        return schema


@dataclass(frozen=True, eq=False)
class Batch:
    """A validated batch, in the arrays the model consumes."""

    ids: list | None  # echoed ids (None when the client sent none)
    numeric: np.ndarray  # (n, len(spec.numeric)) float64, NaN = missing, order of spec.numeric
    categorical: list[np.ndarray]  # one object array of str/None per spec.categorical column
    n_rows: int


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
    detail = _detail(
        "unsupported_media_type",
        "Content-Type",
        (),
        0,
        "application/json or text/csv (charset utf-8 if given)",
        got,
    )
    raise _fail("unsupported_media_type", "unsupported request body type", [detail], 415)


def _empty(layout: str) -> PayloadError:
    detail = _detail("empty_batch", None, (), 0, "at least one customer", f"0 rows ({layout})")
    return _fail("empty_batch", "the batch is empty", [detail])


def _check_size(n: int, spec: InputSpec, layout: str) -> None:
    if n == 0:
        raise _empty(layout)
    if n > spec.max_rows:
        detail = _detail("too_many_rows", None, (), n, f"at most {spec.max_rows} rows", f"{n} rows")
        raise _fail(
            "too_many_rows",
            f"the batch has {n} rows; the limit is {spec.max_rows} per request, split it",
            [detail],
            413,
        )


def _check_columns(
    present: Iterable[str],
    n: int,
    spec: InputSpec,
    rows_with: Callable[[str], list[int]] | None = None,
) -> set[str]:
    """Every feature column present, no column the service does not know; returns the present."""
    present = set(present)
    details = []
    everyone = range(n)
    for name in spec.features:
        if name not in present:
            role = "numeric" if name in spec.numeric else "categorical"
            details.append(
                _detail("missing_columns", name, everyone, n, f"{role} feature column", "absent")
            )
    for name in sorted(present - spec.known):
        rows = rows_with(name) if rows_with else everyone
        details.append(
            _detail(
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
        unknown = [d["field"] for d in details if d["kind"] == "unknown_columns"]
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


def _load_json(body: bytes) -> Any:
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]
    try:
        if orjson is not None:
            return orjson.loads(body)
        return json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:  # orjson.JSONDecodeError is a subclass
        detail = _detail(
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
        raise PayloadError("malformed_json", message, [detail]) from None
    except ValueError as exc:  # invalid UTF-8 or NaN/Infinity without orjson
        detail = _detail("malformed_json", None, (), 0, "valid JSON", str(exc))
        raise PayloadError("malformed_json", f"body is not valid JSON: {exc}", [detail]) from None


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
        detail = _detail(
            "invalid_layout", None, (), 0, "an array of records or an object", _json_type(doc)
        )
        raise _fail("invalid_layout", "unrecognised JSON body", [detail])
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
    return Batch(ids=ids, numeric=numeric, categorical=categorical, n_rows=n)


def _layout_error(field: str, expected: str, value: Any) -> PayloadError:
    got = _json_type(value)
    if isinstance(value, dict):
        got = f"object with keys {sorted(value)[:10]}"
    detail = _detail("invalid_layout", field, (), 0, expected, got)
    return _fail("invalid_layout", "unrecognised JSON body", [detail])


def _records_must_be(records: list, wanted: type, expected: str, layout: str) -> None:
    """Every element is an object (records) or an array (split rows)."""
    if set(map(type, records)) == {wanted}:
        return
    bad = [i for i, r in enumerate(records) if type(r) is not wanted]
    got = ", ".join(sorted({_json_type(records[i]) for i in bad}))
    detail = _detail("invalid_record", None, bad, len(bad), expected, got)
    raise _fail("invalid_record", f"{layout}: every row must be {expected}", [detail])


def _from_records(records: list, spec: InputSpec) -> Batch:
    _check_size(len(records), spec, "records")
    _records_must_be(records, dict, "an object", "records")
    n = len(records)
    keys: set[str] = set().union(*records)
    _check_columns(keys, n, spec, lambda name: [i for i, r in enumerate(records) if name in r])
    if set(map(len, records)) == {len(keys)}:  # every record has every key: C-speed lookups

        def column(name: str) -> Sequence:
            return list(map(itemgetter(name), records))

    else:  # an absent key is a missing value

        def column(name: str) -> Sequence:
            return [r.get(name) for r in records]

    return _assemble(n, keys, column, spec)


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
        detail = _detail(
            "ragged_rows",
            None,
            bad,
            len(bad),
            f"{width} values per row (one per column)",
            f"rows of {', '.join(map(str, lengths))} values",
        )
        raise _fail("ragged_rows", "split rows must match the columns", [detail])
    present = _check_columns(columns, len(data), spec)
    position = {name: i for i, name in enumerate(columns)}

    def column(name: str) -> Sequence:
        return list(map(itemgetter(position[name]), data))

    return _assemble(len(data), present, column, spec)


def _check_unique(columns: Sequence[str]) -> None:
    repeated = sorted(name for name, n in Counter(columns).items() if n > 1)
    if repeated:
        details = [
            _detail(
                "duplicate_columns",
                name,
                (),
                0,
                "each column once",
                f"{Counter(columns)[name]} columns named {name!r}",
            )
            for name in repeated
        ]
        raise _fail("duplicate_columns", "columns appear more than once", details)


def _from_columnar(doc: dict, spec: InputSpec) -> Batch:
    if not doc:
        raise _empty("empty object")
    not_arrays = [name for name, values in doc.items() if not isinstance(values, list)]
    if not_arrays:
        details = [
            _detail(
                "invalid_layout",
                name,
                (),
                0,
                "an array of values (columnar layout)",
                _json_type(doc[name]),
            )
            for name in not_arrays
        ]
        title = (
            "an object must be columnar ({column: [values]}), split ({columns, data}) or "
            '{"customers": [records]}; to score one customer send [record]'
        )
        raise _fail("invalid_layout", title, details)
    lengths = Counter(map(len, doc.values()))
    if len(lengths) > 1:
        common = lengths.most_common(1)[0][0]
        details = [
            _detail(
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
        raise _fail("ragged_rows", "columns have different lengths", details)
    n = next(iter(lengths))
    _check_size(n, spec, "columnar")
    present = _check_columns(doc, n, spec)
    return _assemble(n, present, doc.__getitem__, spec)


def _bad_values(
    name: str, values: Sequence, allowed: frozenset, expected: str, details: list[dict]
) -> None:
    """Report the values of a column whose type set is wrong: wrong types, then nulls."""
    wrong = [i for i, v in enumerate(values) if type(v) not in allowed and v is not None]
    if wrong:
        got = ", ".join(sorted({_json_type(values[i]) for i in wrong}))
        example = _example(values[wrong[0]])
        details.append(
            _detail("invalid_type", name, wrong, len(wrong), expected, got, example=example)
        )
    if _NoneType not in allowed:
        nulls = [i for i, v in enumerate(values) if v is None]
        if nulls:
            details.append(_detail("null_not_allowed", name, nulls, len(nulls), expected, "null"))


def _assemble(
    n: int, present: set[str], column: Callable[[str], Sequence], spec: InputSpec
) -> Batch:
    """Checked arrays from Python values (JSON layouts); a column is scanned only if it is wrong."""
    details: list[dict[str, Any]] = []
    numeric = np.empty((n, len(spec.numeric)), dtype=np.float64)
    broken: set[int] = set()
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
                details.append(
                    _detail(
                        "invalid_type",
                        name,
                        huge,
                        len(huge),
                        "a number within float64 range",
                        "integer too large",
                    )
                )
        else:
            _bad_values(name, values, allowed, expected, details)
        broken.add(j)
    _check_numeric(numeric, broken, spec, details)

    allowed = _STRING_OR_NULL if spec.nullable else frozenset({str})
    expected = "string or null" if spec.nullable else "string"
    categorical = []
    for name in spec.categorical:
        values = column(name)
        array = np.empty(n, dtype=object)
        if set(map(type, values)) <= allowed:
            array[:] = values
        else:
            _bad_values(name, values, allowed, expected, details)
        categorical.append(array)

    ids = None
    if spec.id_column and spec.id_column in present:
        values = column(spec.id_column)
        if not set(map(type, values)) <= _ID:
            _bad_values(spec.id_column, values, _ID, "string or integer", details)
        ids = list(values)
    _raise_values(details)
    return Batch(ids=ids, numeric=numeric, categorical=categorical, n_rows=n)


def _overflows(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _check_numeric(
    numeric: np.ndarray, broken: set[int], spec: InputSpec, details: list[dict]
) -> None:
    """Infinity is never a feature value; NaN (missing) only when the spec is nullable."""
    bad = ~np.isfinite(numeric) if not spec.nullable else np.isinf(numeric)
    if not bad.any():
        return
    for j in np.flatnonzero(bad.any(axis=0)):
        if j in broken:
            continue
        name = spec.numeric[j]
        column = numeric[:, j]
        infinite = np.flatnonzero(np.isinf(column))
        if infinite.size:
            details.append(
                _detail(
                    "invalid_type",
                    name,
                    infinite,
                    infinite.size,
                    "a finite number",
                    "infinity",
                    example=repr(float(column[infinite[0]])),
                )
            )
        if not spec.nullable:
            missing = np.flatnonzero(np.isnan(column))
            if missing.size:
                details.append(
                    _detail("null_not_allowed", name, missing, missing.size, "number", "null")
                )


def _raise_values(details: list[dict[str, Any]]) -> None:
    if not details:
        return
    kinds = {d["kind"] for d in details}
    kind = "invalid_type" if "invalid_type" in kinds else "null_not_allowed"
    title = "invalid values" if kind == "invalid_type" else "values may not be null"
    raise _fail(kind, title, details)


# ------------------------------------------------------------------------------------------ CSV


def _malformed_csv(message: str, **where: Any) -> PayloadError:
    detail = _detail("malformed_csv", None, (), 0, "CSV with a header row", message, **where)
    return PayloadError("malformed_csv", f"body is not valid CSV: {message}", [detail])


def parse_csv(body: bytes, spec: InputSpec) -> Batch:
    """UTF-8 CSV with a header row; an empty cell is a missing value."""
    import pandas as pd  # the C tokenizer is the fastest CSV reader at hand; kept off import time

    if not body or body.isspace():
        raise _empty("empty body")
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed_csv(f"not UTF-8: {exc.reason}", position=exc.start) from None
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
        detail = _detail(
            "too_many_rows",
            None,
            (),
            n,
            f"at most {spec.max_rows} rows",
            f"more than {spec.max_rows} rows (reading stopped there)",
        )
        raise _fail(
            "too_many_rows",
            f"the batch has more than {spec.max_rows} rows, the limit per request; split it",
            [detail],
            413,
        )
    if n == 0:
        raise _empty("CSV header only")
    # pandas pads short rows with missing values; count the fields so a short row is an error
    if len(header) > 1 and ('"' in text or text.count(",") != (len(header) - 1) * (n + 1)):
        _raise_ragged_csv(text, len(header))
    present = _check_columns(header, n, spec)
    details: list[dict[str, Any]] = []
    broken: set[int] = set()
    if numbers_ok:
        matrix = frame[list(spec.numeric)].to_numpy(dtype=np.float64)
    else:
        matrix = np.empty((n, len(spec.numeric)), dtype=np.float64)
        for j, name in enumerate(spec.numeric):
            if not _csv_numbers(name, frame[name].to_numpy(), matrix[:, j], details):
                broken.add(j)
    _check_numeric(matrix, broken, spec, details)
    categorical = [
        _csv_text(frame, name, spec.nullable, "string", details) for name in spec.categorical
    ]
    ids = None
    if spec.id_column and spec.id_column in present:
        ids = _csv_text(frame, spec.id_column, False, "string or integer", details).tolist()
    _raise_values(details)
    return Batch(ids=ids, numeric=matrix, categorical=categorical, n_rows=n)


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
        detail = _detail(
            "ragged_rows",
            None,
            bad,
            len(bad),
            f"{width} fields per row (one per header column)",
            f"rows of {', '.join(map(str, sorted(lengths)))} fields",
        )
        raise _fail("ragged_rows", "CSV rows must match the header", [detail])


def _csv_numbers(name: str, cells: np.ndarray, out: np.ndarray, details: list[dict]) -> bool:
    """Slow path, only after pandas refused a column: every cell is a float, empty or nan."""
    wrong = []
    for i, cell in enumerate(cells):
        text = cell.strip()
        if not text or text.lower() in _NAN_TEXT:
            out[i] = np.nan
        elif _FLOAT_TEXT.fullmatch(text) or text.lower().lstrip("+-") in _INF_TEXT:
            out[i] = float(text)  # infinity is refused by _check_numeric, as on the fast path
        else:
            wrong.append(i)
    if wrong:
        details.append(
            _detail(
                "invalid_type",
                name,
                wrong,
                len(wrong),
                "a number (decimal text) or an empty cell",
                "text that is not a number",
                example=_example(cells[wrong[0]]),
            )
        )
    return not wrong


def _csv_text(frame: Any, name: str, nullable: bool, expected: str, details: list) -> np.ndarray:
    """An object column with None for empty cells (pandas gives NaN, or "" without NA parsing)."""
    series = frame[name]
    array = series.to_numpy(dtype=object, copy=True)
    missing = series.isna().to_numpy() | (array == "")
    if missing.any():
        array[missing] = None
        if not nullable:
            rows = np.flatnonzero(missing)
            details.append(
                _detail("null_not_allowed", name, rows, rows.size, expected, "empty cell")
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
        detail = _detail("not_acceptable", "Accept", (), 0, "application/json or text/csv", accept)
        raise _fail("not_acceptable", "no acceptable response type", [detail], 406)
    return choice


def _list(values: Any) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _floats(values: Any) -> list:
    """Plain floats; NaN and infinity become null so every JSON encoder writes valid JSON."""
    array = np.asarray(values, dtype=np.float64)
    out = array.tolist()
    if not np.isfinite(array).all():
        out = [v if math.isfinite(v) else None for v in out]
    return out


def _columns(
    ids: Any, persona_id: Any, persona_name: Any, confidence: Any, distance: Any
) -> tuple[list | None, list, list, list, list]:
    columns = (_list(persona_id), _list(persona_name), _floats(confidence), _floats(distance))
    id_list = None if ids is None else _list(ids)
    lengths = {len(c) for c in columns} | ({len(id_list)} if id_list is not None else set())
    if len(lengths) > 1:
        raise ValueError(f"prediction columns differ in length: {sorted(lengths)}")
    return (id_list, *columns)


def render_json(
    ids: Any,
    persona_id: Any,
    persona_name: Any,
    confidence: Any,
    distance: Any,
    model: dict,
    *,
    id_column: str = "customer_id",
) -> bytes:
    """``{"model", "n_rows", "predictions": [...]}``; the id key only when ids were sent."""
    id_list, pid, name, conf, dist = _columns(ids, persona_id, persona_name, confidence, distance)
    row_type = _prediction_struct(None if id_list is None else id_column)
    if row_type is not None:  # one C-level struct per row instead of a dict per row
        columns = (pid, name, conf, dist) if id_list is None else (id_list, pid, name, conf, dist)
        predictions = list(map(row_type, *columns))
        return _ENCODER.encode({"model": model, "n_rows": len(pid), "predictions": predictions})
    if id_list is None:
        predictions = [
            {"persona_id": p, "persona_name": m, "confidence": c, "distance": d}
            for p, m, c, d in zip(pid, name, conf, dist, strict=True)
        ]
    else:
        predictions = [
            {id_column: i, "persona_id": p, "persona_name": m, "confidence": c, "distance": d}
            for i, p, m, c, d in zip(id_list, pid, name, conf, dist, strict=True)
        ]
    doc = {"model": model, "n_rows": len(pid), "predictions": predictions}
    if orjson is not None:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(doc, separators=(",", ":"), default=_json_default).encode()


@lru_cache(maxsize=8)
def _prediction_struct(id_column: str | None) -> Any:
    """A msgspec row type whose fields keep the response's key order; None without msgspec."""
    if msgspec is None or (id_column is not None and not id_column.isidentifier()):
        return None
    fields: list[tuple[str, Any]] = [(name, Any) for name in PREDICTION_COLUMNS]
    if id_column is not None:
        fields.insert(0, (id_column, Any))
    return msgspec.defstruct("Prediction", fields, gc=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_ENCODER = msgspec.json.Encoder(enc_hook=_json_default) if msgspec is not None else None


def render_csv(
    ids: Any,
    persona_id: Any,
    persona_name: Any,
    confidence: Any,
    distance: Any,
    model: dict,
    *,
    id_column: str = "customer_id",
) -> bytes:
    """One row per customer, with the model's name and version so a saved file stays traceable."""
    _columns(ids, persona_id, persona_name, confidence, distance)  # equal lengths
    n = len(persona_id)
    columns = [
        _number_cells(persona_id),
        _text_cells(persona_name),
        _number_cells(confidence),
        _number_cells(distance),
        repeat(_text_cells([model.get("name")])[0], n),
        repeat(_text_cells([model.get("version")])[0], n),
    ]
    header = [*PREDICTION_COLUMNS, *CSV_MODEL_COLUMNS]
    if ids is not None:
        columns.insert(0, _text_cells(ids))
        header.insert(0, id_column)
    lines = [",".join(_text_cells(header)), *map(",".join, zip(*columns, strict=True)), ""]
    return "\n".join(lines).encode()


_CSV_SPECIAL = re.compile(r'[",\r\n]')


def _text_cells(values: Any) -> list[str]:
    """CSV cells of text (or ids): None is empty, quoting only where a cell needs it."""
    values = _list(values)
    if set(map(type, values)) != {str}:
        values = ["" if v is None else str(v) for v in values]
    if not _CSV_SPECIAL.search("".join(values)):
        return values
    return [f'"{v.replace(chr(34), chr(34) * 2)}"' if _CSV_SPECIAL.search(v) else v for v in values]


def _number_cells(values: Any) -> list[str]:
    """CSV cells of numbers, shortest round-trip text; NaN is an empty cell.

    Formatting floats one by one in Python dominates a CSV response, so orjson formats the
    whole column at once (about 10x faster than ``repr``).
    """
    array = np.ascontiguousarray(values)
    if array.dtype.kind not in "iuf" or array.size == 0:
        return _text_cells(array.tolist())
    if orjson is not None and array.dtype.kind == "f":
        array = array.astype(np.float64, copy=False)
    if orjson is not None and array.dtype in (np.float64, np.int64):
        text = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        return text[1:-1].replace("null", "").split(",")
    if array.dtype.kind == "f":
        return ["" if v is None else repr(v) for v in _floats(array)]
    return [str(v) for v in array.tolist()]
