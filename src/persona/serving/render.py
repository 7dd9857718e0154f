"""Response bodies of the scoring API: JSON records and CSV, built column-wise for speed."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from typing import Any

import numpy as np

try:  # orjson formats numbers several times faster; the json module keeps the code working
    import orjson
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    orjson = None  # type: ignore[assignment]

try:  # msgspec structs encode a row without building a dict per row
    import msgspec
except ImportError:  # pragma: no cover - exercised only where msgspec is absent
    msgspec = None  # type: ignore[assignment]

PREDICTION_COLUMNS = ("persona_id", "persona_name", "confidence", "distance")
CSV_MODEL_COLUMNS = ("model_name", "model_version")


def _list(values: Any) -> list:
    """A column as a list: a numpy array, an Arrow array (ids read from Arrow) or a list."""
    if hasattr(values, "to_pylist"):
        return values.to_pylist()
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _floats(values: Any) -> list:
    """Plain floats; NaN and infinity become null so every JSON encoder writes valid JSON."""
    array = np.asarray(values, dtype=np.float64)
    out = array.tolist()
    if not np.isfinite(array).all():
        out = [v if math.isfinite(v) else None for v in out]
    return out


@dataclass(frozen=True)
class Predictions:
    """What an answer carries, whatever its format: one entry per row of the request."""

    ids: Any  # as sent, or None when the request had no id column
    persona_id: Any
    persona_name: Any
    confidence: Any
    distance: Any
    model: dict  # name and version of the model that answered
    id_column: str = "customer_id"
    problems: list[list[dict]] | None = None  # per row, when the client asked to flag rows
    echo: dict[str, list] | None = None  # input columns sent back, after the predictions
    ignored_columns: Sequence[str] = ()  # said in a JSON body (the route also sets a header)

    def n_rows(self) -> int:
        """The number of rows; ValueError when the columns differ in length."""
        columns = (self.ids, self.persona_id, self.persona_name, self.confidence, self.distance)
        lengths = {len(c) for c in columns if c is not None}
        if len(lengths) > 1:
            raise ValueError(f"prediction columns differ in length: {sorted(lengths)}")
        return len(self.persona_id)

    def columns(self) -> tuple[list | None, list, list, list, list]:
        """ids and the prediction columns as lists, floats finite or None."""
        self.n_rows()
        return (
            None if self.ids is None else _list(self.ids),
            _list(self.persona_id),
            _list(self.persona_name),
            _floats(self.confidence),
            _floats(self.distance),
        )


def render_json(answer: Predictions) -> bytes:
    """``{"model", "n_rows", "ignored_columns", "predictions": [...]}``.

    A prediction carries the id only when ids were sent, ``problems`` when the request asked to
    flag invalid rows, and the echoed input columns last.
    """
    id_list, pid, name, conf, dist = answer.columns()
    keyed: list[tuple[str, list]] = [] if id_list is None else [(answer.id_column, id_list)]
    keyed += list(zip(PREDICTION_COLUMNS, (pid, name, conf, dist), strict=True))
    if answer.problems is not None:
        keyed.append(("problems", answer.problems))
    keyed += [(column, _list(values)) for column, values in (answer.echo or {}).items()]
    keys = tuple(key for key, _ in keyed)
    head = {
        "model": answer.model,
        "n_rows": len(pid),
        "ignored_columns": list(answer.ignored_columns),
    }
    row_type = _prediction_struct(keys)
    if row_type is not None:  # one C-level struct per row instead of a dict per row
        predictions = list(map(row_type, *(values for _, values in keyed)))
        return _ENCODER.encode({**head, "predictions": predictions})
    predictions = [
        dict(zip(keys, row, strict=True)) for row in zip(*(v for _, v in keyed), strict=True)
    ]
    doc = {**head, "predictions": predictions}
    if orjson is not None:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(doc, separators=(",", ":"), default=_json_default).encode()


@lru_cache(maxsize=32)
def _prediction_struct(keys: tuple[str, ...]) -> Any:
    """A msgspec row type whose fields keep the response's key order; None without msgspec."""
    if msgspec is None or not all(key.isidentifier() for key in keys):
        return None
    return msgspec.defstruct("Prediction", [(key, Any) for key in keys], gc=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_ENCODER = msgspec.json.Encoder(enc_hook=_json_default) if msgspec is not None else None


def render_csv(answer: Predictions) -> bytes:
    """One row per customer, with the model's name and version so a saved file stays traceable.

    Flagged rows name their problems as ``field: rule`` in a ``problems`` column.
    """
    n, ids, model = answer.n_rows(), answer.ids, answer.model
    columns = [
        _number_cells(answer.persona_id),
        _text_cells(answer.persona_name),
        _number_cells(answer.confidence),
        _number_cells(answer.distance),
        repeat(_text_cells([model.get("name")])[0], n),
        repeat(_text_cells([model.get("version")])[0], n),
    ]
    header = [*PREDICTION_COLUMNS, *CSV_MODEL_COLUMNS]
    if ids is not None:
        columns.insert(0, _text_cells(ids))
        header.insert(0, answer.id_column)
    if answer.problems is not None:
        columns.append(_text_cells(problems_text(answer.problems)))
        header.append("problems")
    for column, values in (answer.echo or {}).items():
        columns.append(_text_cells(values))
        header.append(column)
    lines = [",".join(_text_cells(header)), *map(",".join, zip(*columns, strict=True)), ""]
    return "\n".join(lines).encode()


def problems_text(per_row: Sequence[Sequence[dict]]) -> list[str]:
    """A flagged row's problems as one cell: ``field: rule`` joined by ``; `` ("" if none)."""
    return ["; ".join(f"{p['field']}: {p['rule']}" for p in row) for row in per_row]


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
