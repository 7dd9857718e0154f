"""Apache Arrow IPC stream and Parquet bodies: typed columns straight into the batch arrays.

pyarrow reads both (the reference implementation of both formats; no pandas on the way). The
columns arrive typed, so a type check is one look at the column's type, not one per value: a
column of the wrong type makes its non-null rows a problem of the batch (refused or flagged like
a wrong JSON value), a null where the contract allows none likewise. A body pyarrow cannot read
(corrupt, truncated, not that format) is a 400 saying so. The row limit, and how far a
compressed body may inflate, are checked from what the body declares before anything is
decoded (the Parquet footer; each IPC message's metadata).

The table read becomes a contract-checked ``Batch`` through the one converter from Arrow
(``record_batches.batch_from_arrow``, strict as for JSON); ``render_arrow`` / ``render_parquet`` write the answer as one record batch with the CSV answer's
columns (the model's name and version on every row, dictionary-encoded), so a saved file stays
traceable.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from persona.serving.columns import check_size, check_unique
from persona.serving.contract import Batch, InputSpec
from persona.serving.payload import ARROW_STREAM, PARQUET, X_PARQUET
from persona.serving.problems import PayloadError, detail
from persona.serving.record_batches import batch_from_arrow
from persona.serving.render import CSV_MODEL_COLUMNS, Predictions

# A compressed body may decode to at most this much (a "zip bomb" stops here, unread):
# 16 times its size, and never less than 256 MiB.
MAX_EXPANSION, MIN_DECODED_LIMIT = 16, 256 << 20


def _malformed(kind: str, fmt: str, message: str) -> PayloadError:
    found = detail(kind, None, (), 0, fmt, message[:200])
    return PayloadError(kind, f"body is not {fmt} pyarrow can read: {message[:200]}", [found])


def parse_arrow_stream(body: bytes, spec: InputSpec) -> Batch:
    """An Arrow IPC stream (schema, then record batches); reading stops past the row limit."""
    fmt = "an Apache Arrow IPC stream"
    try:
        _check_declared(body, spec)
        reader = pa.ipc.open_stream(pa.BufferReader(body))
        batches, n = [], 0
        for batch in reader:
            batches.append(batch)
            n += batch.num_rows
            if n > spec.max_rows:
                break
        check_size(n, spec, "Arrow stream")
        table = pa.Table.from_batches(batches, schema=reader.schema).combine_chunks()
        table.validate(full=True)  # offsets, UTF-8: never hand a broken buffer to numpy
    except (pa.ArrowException, OSError, ValueError, struct.error, IndexError) as exc:
        raise _malformed("malformed_arrow", fmt, str(exc) or type(exc).__name__) from None
    return batch_from_arrow(table, spec, strict=True)


def _check_declared(body: bytes, spec: InputSpec) -> None:
    """The rows and decoded bytes the stream's messages declare, before any is decoded.

    pyarrow decodes a whole record batch before saying how many rows it has, and inflates a
    compressed one to whatever size it claims; so each message's metadata (a flatbuffer) is
    read here first: too many rows is the 413 of any batch, a compressed body decoding to more
    than ``MAX_EXPANSION`` times its size a 413 too.
    """
    rows = size = 0
    limit = max(MAX_EXPANSION * len(body), MIN_DECODED_LIMIT)
    for message in pa.ipc.MessageReader.open_stream(pa.BufferReader(body)):
        if message.type not in ("record batch", "dictionary"):
            continue
        declared_rows, declared_size = _declared(message.metadata, message.body)
        rows, size = rows + declared_rows, size + declared_size
        if rows > spec.max_rows:
            check_size(rows, spec, "Arrow stream")
        if size > limit:
            _too_large(size, limit)


def _too_large(size: int, limit: int) -> None:
    found = detail(
        "body_too_large", None, (), 0, f"at most {limit} bytes decoded", f"{size} bytes or more"
    )
    message = (
        f"the body decodes to more than {limit} bytes ({MAX_EXPANSION}x its size); "
        "send it less compressed or split the batch"
    )
    raise PayloadError("body_too_large", message, [found], 413)


def _declared(metadata: pa.Buffer, body: pa.Buffer | None) -> tuple[int, int]:
    """(rows, decoded bytes) of one IPC message, from its flatbuffer metadata.

    The layout is Arrow's Message.fbs: Message{version, header_type, header, bodyLength},
    RecordBatch{length, nodes, buffers, compression}, DictionaryBatch{id, data}. A compressed
    buffer starts with its decoded length (int64, -1 when stored as is). A dictionary's rows
    are levels, not customers: only its bytes count.
    """
    meta = metadata.to_pybytes()
    message = _u32(meta, 0)
    kind_at, header = _field(meta, message, 1), _field(meta, message, 2)
    kind = meta[kind_at] if kind_at is not None else 0
    if kind not in (2, 3) or header is None:  # 2: DictionaryBatch, 3: RecordBatch
        return 0, 0
    table = _ref(meta, header)
    if kind == 2:
        data = _field(meta, table, 1)
        if data is None:
            return 0, 0
        table = _ref(meta, data)
    length = _field(meta, table, 0)
    rows = struct.unpack_from("<q", meta, length)[0] if length is not None and kind == 3 else 0
    buffers, compressed = _field(meta, table, 2), _field(meta, table, 3) is not None
    if not compressed or buffers is None or body is None:
        return rows, 0 if body is None else body.size  # stored as is: the body is its size
    vector, size = _ref(meta, buffers), 0
    for i in range(_u32(meta, vector)):
        offset, stored = struct.unpack_from("<qq", meta, vector + 4 + 16 * i)
        if stored >= 8:
            decoded = struct.unpack_from("<q", body, offset)[0]
            size += stored - 8 if decoded == -1 else decoded
    return rows, size


def _u32(data: bytes, at: int) -> int:
    return struct.unpack_from("<I", data, at)[0]


def _field(data: bytes, table: int, index: int) -> int | None:
    """Where a flatbuffer table's field is stored, or None when absent (its default)."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    if 4 + 2 * index >= struct.unpack_from("<H", data, vtable)[0]:
        return None
    offset = struct.unpack_from("<H", data, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None


def _ref(data: bytes, at: int) -> int:
    return at + _u32(data, at)


def parse_parquet(body: bytes, spec: InputSpec) -> Batch:
    """A Parquet file; only the columns the contract knows are decoded."""
    fmt = "a Parquet file"
    try:
        # pre-buffering coalesces reads from remote storage; in memory it only costs (2.4 -> 1.5 ms
        # for 10k rows)
        metadata = pq.read_metadata(pa.BufferReader(body))
        schema = metadata.schema.to_arrow_schema()
        names = schema.names
        check_unique(names)
        # text features read as dictionaries (as written, by pandas and most writers): each
        # level decoded once, and the levels the contract checks come with the column
        levels = [
            name
            for name in spec.categorical
            if name in names and pa.types.is_string(schema.field(name).type)
        ]
        parquet = pq.ParquetFile(
            pa.BufferReader(body), pre_buffer=False, metadata=metadata, read_dictionary=levels
        )
        check_size(parquet.metadata.num_rows, spec, "Parquet")
        groups = (parquet.metadata.row_group(i) for i in range(parquet.metadata.num_row_groups))
        decoded = sum(group.total_byte_size for group in groups)
        limit = max(MAX_EXPANSION * len(body), MIN_DECODED_LIMIT)
        if decoded > limit:
            _too_large(decoded, limit)
        everything = spec.extra_columns == "ignore"  # then any column may be echoed
        wanted = [name for name in dict.fromkeys(names) if everything or name in spec.known]
        table = parquet.read(columns=wanted, use_threads=False).combine_chunks()
        table.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _malformed("malformed_parquet", fmt, str(exc) or type(exc).__name__) from None
    if table.num_rows != parquet.metadata.num_rows:  # a footer that lies about its rows
        check_size(table.num_rows, spec, "Parquet")
    return batch_from_arrow(table, spec, strict=True, names=names)


# ----------------------------------------------------------------------------------- answers


def answer_table(answer: Predictions) -> pa.Table:
    """The answer as a table: the CSV answer's columns, typed; problems as a list of structs."""
    n = answer.n_rows()
    arrays: dict[str, pa.Array | pa.ChunkedArray] = {}
    if answer.ids is not None:
        arrays[answer.id_column] = _array(answer.ids)
    arrays["persona_id"], arrays["persona_name"] = _personas(answer.persona_id, answer.persona_name)
    for column in ("confidence", "distance"):
        values = np.asarray(getattr(answer, column), dtype=np.float64)
        arrays[column] = pa.array(values, mask=np.isnan(values))  # NaN (unscored) -> null
    for column, value in zip(CSV_MODEL_COLUMNS, ("name", "version"), strict=True):
        level = pa.array([str(answer.model.get(value))])
        arrays[column] = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), level)
    if answer.problems is not None:
        arrays["problems"] = pa.array(answer.problems, type=_PROBLEMS)
    for column, values in (answer.echo or {}).items():
        if column not in arrays:
            arrays[column] = _array(values)
    metadata = {
        "model_name": str(answer.model.get("name")),
        "model_version": str(answer.model.get("version")),
        "ignored_columns": ",".join(answer.ignored_columns),
    }
    return pa.table(arrays, metadata=metadata)


def _personas(persona_id: Any, persona_name: Any) -> tuple[pa.Array, pa.DictionaryArray]:
    """persona_id as int64 and persona_name dictionary-encoded by persona (few levels).

    The names are looked up by id, so a 100k-row answer converts a handful of strings, not one
    per row; the dictionary holds the personas present, once each (pandas requires unique
    levels). Flagged rows (None), or two ids of one name, take the general way.
    """
    ids = np.asarray(persona_id)
    names = np.asarray(persona_name, dtype=object)
    if ids.dtype.kind in "iu" and ids.size and ids.min() >= 0 and ids.max() < 1 << 16:
        first = np.full(int(ids.max()) + 1, -1)
        first[ids[::-1]] = np.arange(ids.size)[::-1]  # each persona's first row
        present = np.flatnonzero(first >= 0)
        levels = names[first[present]].tolist()
        if len(set(levels)) == len(levels):
            position = np.zeros(first.size, dtype=np.int32)
            position[present] = np.arange(present.size, dtype=np.int32)
            dictionary = pa.array(levels, pa.string())
            encoded = pa.DictionaryArray.from_arrays(pa.array(position[ids]), dictionary)
            return pa.array(ids.astype(np.int64)), encoded
    id_array = pa.array(ids.tolist(), type=pa.int64())
    return id_array, pc.dictionary_encode(pa.array(names.tolist(), pa.string()))


_PROBLEMS = pa.list_(
    pa.struct([("field", pa.string()), ("rule", pa.string()), ("kind", pa.string())])
)


def _array(values: Any) -> pa.Array | pa.ChunkedArray:
    """A column as sent (ids read from Arrow: as they came); mixed types (possible in JSON
    input) travel as text."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    try:
        return pa.array(values.tolist() if isinstance(values, np.ndarray) else values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def render_arrow(answer: Predictions) -> bytes:
    """One Arrow IPC stream with one record batch."""
    table = answer_table(answer)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def render_parquet(answer: Predictions) -> bytes:
    """A Parquet file, one row group, snappy (Parquet's usual codec).

    Only the columns that are dictionaries already (persona name, model) are written as
    dictionaries, and no column statistics: trying dictionaries on unique floats and ids and
    computing min/max cost more than scoring the rows (3x the write time at 10k rows).
    """
    table = answer_table(answer)
    dictionaries = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink, compression="snappy", use_dictionary=dictionaries, write_statistics=False
    )
    return sink.getvalue().to_pybytes()


# application/x-parquet: what many clients and tools still send
PARSERS: dict[str, Callable[[bytes, InputSpec], Batch]] = {
    ARROW_STREAM: parse_arrow_stream,
    PARQUET: parse_parquet,
    X_PARQUET: parse_parquet,
}
RENDERERS: dict[str, Callable[[Predictions], bytes]] = {
    ARROW_STREAM: render_arrow,
    PARQUET: render_parquet,
    X_PARQUET: render_parquet,
}
