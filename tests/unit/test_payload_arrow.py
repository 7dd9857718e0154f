"""Arrow IPC stream and Parquet bodies and answers: same batch as JSON, same refusals, round trips."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_payload import (
    LARGE,
    MODEL,
    RECORDS,
    SPEC,
    STRICT,
    assert_expected_batch,
    random_columns,
)

from persona.serving import payload
from persona.serving.contract import InputSpec, id_values
from persona.serving.payload import negotiate, parse_request
from persona.serving.payload_arrow import answer_table, render_arrow, render_parquet
from persona.serving.problems import PayloadError, rejection
from persona.serving.render import CSV_MODEL_COLUMNS, PREDICTION_COLUMNS, Predictions

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def table(records=RECORDS, **types: pa.DataType) -> pa.Table:
    names = list(dict.fromkeys(k for r in records for k in r))
    columns = {name: [r.get(name) for r in records] for name in names}
    arrays = {n: pa.array(v) for n, v in columns.items()}
    return pa.table({n: a.cast(types[n]) if n in types else a for n, a in arrays.items()})


def stream(data: pa.Table, max_chunksize: int | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data, max_chunksize=max_chunksize)
    return sink.getvalue().to_pybytes()


def parquet(data: pa.Table, row_group_size: int | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(data, sink, row_group_size=row_group_size)
    return sink.getvalue().to_pybytes()


def refusal(body: bytes, content_type: str, spec: InputSpec = SPEC) -> PayloadError:
    """The error a request gets: refused while read, or for its rows (on_invalid=reject)."""
    try:
        batch = parse_request(body, content_type, spec)
    except PayloadError as exc:
        return exc
    assert batch.problems, "expected a refusal"
    return rejection(batch.problems)


BODIES = {
    "arrow": (stream(table()), ARROW),
    "arrow_one_row_per_batch": (stream(table(), max_chunksize=1), ARROW),
    "parquet": (parquet(table()), PARQUET),
    "x_parquet": (parquet(table()), "application/x-parquet"),
    # text read as dictionaries: one per row group, each with other levels
    "parquet_a_row_group_per_row": (parquet(table(), row_group_size=1), PARQUET),
    "dictionary_and_large_text": (
        stream(table(channel=pa.dictionary(pa.int8(), pa.string()), customer_id=pa.large_string())),
        ARROW,
    ),
    "float32_and_decimal": (
        parquet(table(age=pa.float32(), income=pa.decimal128(10, 2))),
        PARQUET,
    ),
}


@pytest.mark.parametrize("body", BODIES)
def test_arrow_and_parquet_give_the_batch_json_gives(body):
    batch = parse_request(*BODIES[body], SPEC)
    assert_expected_batch(batch)
    assert batch.ignored_columns == ("snapshot_month",)
    assert batch.read_ignored("snapshot_month") == [None, "2024-01", None]


def test_integer_columns_with_nulls_and_columns_in_any_order():
    records = [
        {"channel": "a", "income": 3, "age": 30, "customer_id": 7},
        {"channel": None, "income": None, "age": 41, "customer_id": 8},
    ]
    batch = parse_request(stream(table(records)), ARROW, SPEC)
    np.testing.assert_array_equal(batch.numeric, [[30, 3], [41, np.nan]])
    assert id_values(batch.ids) == [7, 8] and batch.categorical[0].tolist() == ["a", None]
    assert not batch.problems


@pytest.mark.parametrize(
    ("column", "values", "kind", "rows"),
    [
        ("income", ["1", "x", None], "invalid_type", [0, 1]),  # text where numbers go
        ("age", [True, False, None], "invalid_type", [0, 1]),  # booleans are not numbers
        ("channel", [1, None, 3], "invalid_type", [0, 2]),  # numbers where text goes
        ("customer_id", [1.5, 2.5, 3.5], "invalid_type", [0, 1, 2]),
        ("customer_id", ["C1", None, "C3"], "null_not_allowed", [1]),
        ("income", [1.0, float("inf"), 2.0], "invalid_type", [1]),
    ],
)
def test_a_wrong_column_type_or_value_names_field_and_rows(column, values, kind, rows):
    data = table().set_column(table().column_names.index(column), column, pa.array(values))
    for body, content_type in ((stream(data), ARROW), (parquet(data), PARQUET)):
        error = refusal(body, content_type)
        found = error.details[0]
        assert (error.kind, found["field"], found["rows"]) == (kind, column, rows)
        assert column in error.message


def test_nulls_where_the_contract_allows_none():
    error = refusal(stream(table()), ARROW, STRICT)
    assert error.kind == "null_not_allowed"
    assert {(d["field"], tuple(d["rows"])) for d in error.details} == {
        ("age", (1,)),
        ("channel", (1,)),
    }


def test_missing_unknown_and_duplicate_columns():
    error = refusal(stream(table().drop_columns(["age"])), ARROW)
    assert (error.kind, error.details[0]["field"]) == ("missing_columns", "age")
    error = refusal(parquet(table().append_column("shoe_size", pa.array([1, 2, 3]))), PARQUET)
    assert (error.kind, error.details[0]["field"]) == ("unknown_columns", "shoe_size")
    twice = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["age", "age"])
    assert refusal(stream(twice), ARROW).kind == "duplicate_columns"
    assert refusal(parquet(twice), PARQUET).kind == "duplicate_columns"


def test_other_columns_are_read_for_echo_when_the_contract_ignores_them():
    spec = InputSpec(("age", "income"), ("channel",), extra_columns="ignore", max_rows=10)
    data = table().append_column("crm_segment", pa.array(["a", "b", None]))
    for body, content_type in ((stream(data), ARROW), (parquet(data), PARQUET)):
        batch = parse_request(body, content_type, spec)
        assert batch.ignored_columns == ("crm_segment", "snapshot_month")
        assert batch.read_ignored("crm_segment") == ["a", "b", None]


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        (b"", ARROW, "malformed_arrow"),
        (b"not arrow at all", ARROW, "malformed_arrow"),
        (stream(table())[:-40], ARROW, "malformed_arrow"),  # truncated in the last batch
        (parquet(table()), ARROW, "malformed_arrow"),  # a Parquet file sent as Arrow
        (b"", PARQUET, "malformed_parquet"),
        (b"PAR1 garbage PAR1", PARQUET, "malformed_parquet"),
        (parquet(table())[:-30], PARQUET, "malformed_parquet"),  # the footer cut off
        (stream(table()), PARQUET, "malformed_parquet"),
    ],
)
def test_an_unreadable_body_is_a_400_saying_so(body, content_type, kind):
    error = refusal(body, content_type)
    assert (error.kind, error.status) == (kind, 400)
    assert error.details[0]["field"] is None and error.details[0]["got"]


def test_a_corrupt_string_buffer_is_refused_not_read(monkeypatch):
    good = stream(table())
    bad = good.replace(b"online", b"on\xffine")  # invalid UTF-8 inside a string column
    assert refusal(bad, ARROW).kind == "malformed_arrow"


def compressed(data: pa.Table, codec: str = "zstd") -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=codec)
    with pa.ipc.new_stream(sink, data.schema, options=options) as writer:
        writer.write_table(data, max_chunksize=2)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_compressed_stream_reads_the_same(codec):
    assert_expected_batch(parse_request(compressed(table(), codec), ARROW, SPEC))


def test_a_body_that_inflates_past_the_limit_is_refused_undecoded(monkeypatch):
    from persona.serving import payload_arrow

    records = [{**r, "channel": "x" * 200_000} for r in RECORDS]  # compresses ~1000x
    monkeypatch.setattr(payload_arrow, "MIN_DECODED_LIMIT", 0)
    for body, content_type in (
        (compressed(table(records)), ARROW),
        (parquet(table(records)), PARQUET),
    ):
        error = refusal(body, content_type)
        assert (error.kind, error.status) == ("body_too_large", 413)
        assert "decodes to more than" in error.message
    assert parse_request(stream(table(records)), ARROW, SPEC).n_rows == 3  # stored as is


def test_the_row_limit_is_checked_before_a_row_is_decoded(monkeypatch):
    many = table([RECORDS[0]] * (SPEC.max_rows + 1))

    def never(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(pa.ipc, "open_stream", never)
    for body in (stream(many), compressed(many)):
        assert (refusal(body, ARROW).kind, refusal(body, ARROW).status) == ("too_many_rows", 413)


def test_the_row_limit_is_checked_before_every_row_is_read():
    many = table([RECORDS[0]] * (SPEC.max_rows + 1))
    for body, content_type in ((stream(many, max_chunksize=7), ARROW), (parquet(many), PARQUET)):
        error = refusal(body, content_type)
        assert (error.kind, error.status) == ("too_many_rows", 413)
    empty = table().slice(0, 0)
    for body, content_type in ((stream(empty), ARROW), (parquet(empty), PARQUET)):
        assert refusal(body, content_type).kind == "empty_batch"


def test_a_date_column_may_be_an_arrow_date():
    spec = InputSpec(("age",), ("joined",), dates=("joined",), max_rows=10)
    data = pa.table(
        {"age": [30.0, 40.0], "joined": pa.array([dt.date(2013, 5, 17), None], pa.date32())}
    )
    batch = parse_request(stream(data), ARROW, spec)
    assert batch.categorical[0].tolist() == ["2013-05-17", None]


def test_a_larger_batch_parses_as_json_does():
    ids, numeric, channel = random_columns(3000)
    data = pa.table(
        {
            "customer_id": ids,
            "age": pa.array(numeric[:, 0], mask=np.isnan(numeric[:, 0])),
            "income": numeric[:, 1],  # NaN itself is a missing value too
            "channel": channel,
        }
    )
    for body, content_type in ((stream(data, 1000), ARROW), (parquet(data), PARQUET)):
        batch = parse_request(body, content_type, LARGE)
        np.testing.assert_array_equal(batch.numeric, numeric)
        assert batch.categorical[0].tolist() == channel.tolist()
        assert id_values(batch.ids) == data.column("customer_id").to_pylist()


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (ARROW, ARROW),
        (PARQUET, PARQUET),
        ("application/x-parquet", "application/x-parquet"),
        (f"{PARQUET};q=0.5, {ARROW}", ARROW),
        ("application/*", "application/json"),
        ("*/*", "application/json"),
    ],
)
def test_negotiate_offers_arrow_and_parquet(accept, chosen):
    assert negotiate(accept) == chosen


def test_binary_media_types_dispatch_to_pyarrow_only_when_sent(monkeypatch):
    from persona.serving import payload_arrow

    calls = []
    monkeypatch.setitem(payload_arrow.PARSERS, ARROW, lambda body, spec: calls.append(body) or 1)
    assert parse_request(b"x", f"{ARROW}; foo=bar", SPEC) == 1 and calls == [b"x"]
    assert set(payload_arrow.PARSERS) == set(payload_arrow.RENDERERS) == set(payload.BINARY)


# ----------------------------------------------------------------------------------- answers

ANSWER = Predictions(
    ["C1", 7, "C3"],
    np.array([2, 0, 5]),
    np.array(["Big Spender", "Quote", "Lapsed"], dtype=object),
    np.array([0.1, 0.98, np.nan]),
    np.array([1e-7, 2.5, 123456.789]),
    MODEL,
    echo={"age": [30, None, 41.5]},
    ignored_columns=("snapshot_month",),
)


def read_stream(body: bytes) -> pa.Table:
    return pa.ipc.open_stream(body).read_all()


@pytest.mark.parametrize("render", [render_arrow, render_parquet])
def test_an_answer_round_trips_with_types_nulls_and_the_model(render):
    body = render(ANSWER)
    got = read_stream(body) if render is render_arrow else pq.read_table(pa.BufferReader(body))
    # the CSV answer's columns, then the echoed ones
    assert got.column_names == ["customer_id", *PREDICTION_COLUMNS, *CSV_MODEL_COLUMNS, "age"]
    assert got.column("customer_id").to_pylist() == ["C1", "7", "C3"]  # mixed ids as text
    assert got.schema.field("persona_id").type == pa.int64()
    assert got.column("persona_id").to_pylist() == [2, 0, 5]
    assert got.column("persona_name").to_pylist() == ["Big Spender", "Quote", "Lapsed"]
    assert got.to_pandas()["persona_name"].tolist() == ["Big Spender", "Quote", "Lapsed"]
    assert got.column("confidence").to_pylist() == [0.1, 0.98, None]
    assert got.column("model_version").to_pylist() == ["3", "3", "3"]
    assert got.column("age").to_pylist() == [30, None, 41.5]
    metadata = got.schema.metadata
    assert (
        metadata[b"model_name"] == b"persona" and metadata[b"ignored_columns"] == b"snapshot_month"
    )


def test_flagged_rows_have_null_scores_and_their_problems():
    flagged = Predictions(
        None,
        np.array([1, None], dtype=object),
        np.array(["A", None], dtype=object),
        np.array([0.5, np.nan]),
        np.array([1.0, np.nan]),
        MODEL,
        problems=[[], [{"field": "age", "rule": ">= 18", "kind": "invalid_value"}]],
    )
    got = answer_table(flagged)
    assert "customer_id" not in got.column_names
    assert got.column("persona_id").to_pylist() == [1, None]
    assert got.column("persona_name").to_pylist() == ["A", None]
    assert got.column("problems").to_pylist()[1] == [
        {"field": "age", "rule": ">= 18", "kind": "invalid_value"}
    ]


def test_two_personas_of_one_name_still_give_unique_levels():
    same = Predictions(
        None, np.array([0, 1]), np.array(["A", "A"], dtype=object), *[np.ones(2)] * 2, MODEL
    )
    got = answer_table(same)
    assert got.to_pandas()["persona_name"].tolist() == ["A", "A"]
    assert got.column("persona_id").to_pylist() == [0, 1]
