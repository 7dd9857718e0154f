"""Streaming batch scoring in process (``persona score --engine local``) on models in memory:
the same labels as the API's request path on the same rows, files of another shape than the
synthetic one, bad rows rejected or flagged by row and field, months filtered or labelled."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from marketing import marketing_frame, marketing_model, marketing_schema
from memory_source import CATALOGUE, MemorySource, tiny_model

from persona.data.file_batches import BatchWriter, open_batches
from persona.errors import InvalidInputError
from persona.flows.score_stream import StreamRequest, score_stream
from persona.serving.invocations import invocations
from persona.serving.model_store import ServedModel, served_now, spec_for_model
from persona.serving.record_batches import batch_from_arrow

pytestmark = pytest.mark.unit

SYNTHETIC = CATALOGUE.schema


def served(model, schema, fast: bool = True, renames: dict | None = None) -> ServedModel:
    source = MemorySource()
    source.add(model, "production")
    source.renames = dict(renames or {})
    found = served_now(source, "production", spec_for_model(schema, 1_000_000, "ignore"))
    return found if fast else dataclasses.replace(found, compiled=None)


def synthetic_rows(n: int, seed: int = 5, month: str = "2026-01") -> pd.DataFrame:
    from persona.data.generator import generate_snapshot

    return generate_snapshot(CATALOGUE, n, month, seed=seed, progress=False)


def stream_file(model, path, out, batch_rows=37, on_invalid="reject", month=None, **read):
    """What ``persona score --engine local --file path --out out`` does with a model."""
    spec = model.spec
    reader = open_batches(
        path,
        id_column=spec.id_column,
        text_columns=spec.categorical,
        expected_columns=[spec.id_column, *spec.features],
        **read,
    )
    month_column = SYNTHETIC.month_column
    request = StreamRequest(
        spec.id_column,
        month_column,
        month_column in reader.columns,
        month,
        on_invalid,
        batch_rows,
    )
    batches = reader.batches(request.columns_to_read(spec, reader.columns), batch_rows)
    with BatchWriter(out, request.result_schema()) as writer:
        outcome = score_stream(model, batches, writer, request, reader.total_rows, progress=False)
    return outcome, pq.read_table(out).to_pandas() if str(out).endswith(".parquet") else None


def api_answer(model, rows: pd.DataFrame, on_invalid: str = "reject") -> pd.DataFrame:
    """The API's CSV answer (the request path of /predict) for the same rows as JSON records."""
    body = json.dumps(json.loads(rows.to_json(orient="records"))).encode()
    answer = invocations(model, body, "application/json", "text/csv", on_invalid)
    return pd.read_csv(io.BytesIO(answer.body), dtype={"model_version": str})


def test_parquet_in_batches_gives_the_api_labels_and_the_http_jobs_columns(tmp_path):
    renamed = min(p.persona_id for p in tiny_model().personas.values())
    model = served(tiny_model(), SYNTHETIC, renames={renamed: "Renamed by a person"})
    rows = synthetic_rows(500)
    rows.loc[rows.index[:40], "annual_income"] = np.nan  # the model imputes
    rows.loc[rows.index[40:60], "channel"] = None
    rows.to_parquet(tmp_path / "in.parquet", index=False)

    outcome, out = stream_file(model, tmp_path / "in.parquet", tmp_path / "out.parquet")

    assert list(out.columns) == [
        "customer_id",
        "snapshot_month",
        "persona_id",
        "persona_name",
        "model_name",
        "model_version",
        "scored_at",
    ]
    features = rows.drop(columns=["true_persona", "snapshot_month"])
    api = api_answer(model, features)
    assert out["customer_id"].tolist() == rows["customer_id"].tolist()
    assert out["persona_id"].tolist() == api["persona_id"].tolist()
    assert out["persona_name"].tolist() == api["persona_name"].tolist()
    assert "Renamed by a person" in set(out["persona_name"])  # names people gave, as the API serves
    assert set(out["model_version"]) == {"1"} and set(out["snapshot_month"]) == {"2026-01"}
    summary = outcome.summary()
    assert (summary["scored_rows"], summary["failed_rows"], summary["fast_path"]) == (500, 0, True)


def test_a_model_the_fast_path_cannot_compile_scores_the_same_through_the_pyfunc(tmp_path):
    rows = synthetic_rows(120, seed=8)
    rows.to_parquet(tmp_path / "in.parquet", index=False)
    fast = stream_file(
        served(tiny_model(), SYNTHETIC), tmp_path / "in.parquet", tmp_path / "a.parquet"
    )
    slow_model = served(tiny_model(), SYNTHETIC, fast=False)
    slow = stream_file(slow_model, tmp_path / "in.parquet", tmp_path / "b.parquet")
    assert slow[0].summary()["fast_path"] is False
    assert slow[1]["persona_id"].tolist() == fast[1]["persona_id"].tolist()


def messy_export(tmp_path, rows: int = 150, bad_row: int | None = None):
    """A marketing export as teams send it: semicolon CSV with a BOM in cp1252, integer ids,
    missing incomes, extra columns, no month column."""
    frame = marketing_frame(rows, seed=4, missing_income=7).drop(columns=["snapshot_month"])
    frame["ID"] = np.arange(1000, 1000 + rows)
    frame["Note"] = "café contact"
    if bad_row is not None:
        frame.loc[bad_row, "Income"] = -5.0
    path = tmp_path / "export.csv"
    path.write_bytes(frame.to_csv(sep=";", index=False).encode("cp1252"))
    return frame, path


def test_a_messy_export_under_its_own_schema_gives_the_api_labels(tmp_path):
    model = served(marketing_model(), marketing_schema())
    frame, path = messy_export(tmp_path)

    outcome, out = stream_file(model, path, tmp_path / "out.parquet", month="2026-05")

    api = api_answer(model, frame.drop(columns=["Note"]).assign(ID=frame["ID"].astype(str)))
    assert out["ID"].tolist() == [str(i) for i in frame["ID"]]  # ids are text, as read
    assert out["persona_id"].tolist() == api["persona_id"].tolist()
    assert set(out["snapshot_month"]) == {"2026-05"}  # no month column: labelled
    assert outcome.summary()["scored_rows"] == len(frame)


def test_reject_names_field_rule_row_and_id_and_keeps_no_file(tmp_path):
    model = served(marketing_model(), marketing_schema())
    _, path = messy_export(tmp_path, bad_row=57)
    out = tmp_path / "out.parquet"

    with pytest.raises(InvalidInputError) as info:
        stream_file(model, path, out, batch_rows=20)

    message = str(info.value)
    assert "'Income'" in message and ">= 0" in message
    assert "57" in message and "1057" in message  # the row's position and its id
    assert not out.exists() and not list(tmp_path.glob(".out.parquet*"))


def test_flag_scores_the_others_and_names_the_bad_row(tmp_path):
    model = served(marketing_model(), marketing_schema())
    frame, path = messy_export(tmp_path, bad_row=57)

    outcome, out = stream_file(model, path, tmp_path / "out.parquet", 20, "flag")

    assert len(out) == len(frame)
    bad = out.iloc[57]
    assert pd.isna(bad["persona_id"]) and pd.isna(bad["persona_name"])
    assert bad["problems"] == "Income: >= 0"
    assert out.drop(index=57)["problems"].isna().all()
    assert out.drop(index=57)["persona_id"].notna().all()
    summary = outcome.summary()
    assert (summary["scored_rows"], summary["failed_rows"]) == (len(frame) - 1, 1)
    assert summary["failed_ids"] == ["1057"]
    [found] = summary["problems"]
    assert (found["field"], found["rule"], found["rows"], found["ids"]) == (
        "Income",
        ">= 0",
        [57],
        ["1057"],
    )


def test_a_month_is_filtered_from_a_file_that_has_months(tmp_path):
    model = served(tiny_model(), SYNTHETIC)
    rows = pd.concat([synthetic_rows(50, 1, "2026-01"), synthetic_rows(70, 2, "2026-02")])
    rows.to_parquet(tmp_path / "in.parquet", index=False)

    outcome, out = stream_file(
        model, tmp_path / "in.parquet", tmp_path / "o.parquet", month="2026-02"
    )

    assert len(out) == 70 and set(out["snapshot_month"]) == {"2026-02"}
    assert outcome.summary()["rows_read"] == 120


def test_values_of_the_wrong_type_are_problems_of_their_rows():
    model = served(tiny_model(), SYNTHETIC)
    rows = synthetic_rows(6)
    record = pa.RecordBatch.from_pandas(
        rows.assign(
            age=["34", "abc", None, "51", "40", "22"],  # numbers as text, one that is not
            web_visits=[True, False, None, True, True, False],  # booleans are not numbers
            customer_id=[1, 2, 3, None, 5, 6],
        ),
        preserve_index=False,
    )
    batch = batch_from_arrow(record, model.spec)
    found = {(p.kind, p.field): p.rows.tolist() for p in batch.problems}
    assert found[("invalid_type", "age")] == [1]
    assert found[("invalid_type", "web_visits")] == [0, 1, 3, 4, 5]
    assert found[("null_not_allowed", "customer_id")] == [3]
    assert batch.numeric[0, model.spec.numeric.index("age")] == 34.0
    assert batch.ids[:3].tolist() == ["1", "2", "3"]  # integer ids are their digits


def test_a_file_without_a_feature_column_is_refused_naming_it(tmp_path):
    model = served(tiny_model(), SYNTHETIC)
    synthetic_rows(10).drop(columns=["region"]).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(InvalidInputError, match="region"):
        stream_file(model, tmp_path / "in.csv", tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_batches_stay_within_the_batch_size(tmp_path):
    """Memory holds one batch: the sink never receives more rows at once than asked for."""
    model = served(tiny_model(), SYNTHETIC)
    rows = synthetic_rows(230)
    rows.to_csv(tmp_path / "in.csv", index=False)
    spec = model.spec
    reader = open_batches(tmp_path / "in.csv", id_column=spec.id_column)
    request = StreamRequest(spec.id_column, "snapshot_month", True, None, "reject", 50)
    sizes = []

    class Sizes:
        def write(self, table):
            sizes.append(table.num_rows)

    batches = reader.batches(request.columns_to_read(spec, reader.columns), 50)
    score_stream(model, batches, Sizes(), request, progress=False)
    assert sizes == [50, 50, 50, 50, 30]


def test_csv_out_holds_the_same_rows(tmp_path):
    model = served(tiny_model(), SYNTHETIC)
    synthetic_rows(40).to_parquet(tmp_path / "in.parquet", index=False)
    _, parquet = stream_file(model, tmp_path / "in.parquet", tmp_path / "o.parquet")
    stream_file(model, tmp_path / "in.parquet", tmp_path / "o.csv")
    csv = pd.read_csv(tmp_path / "o.csv", dtype={"model_version": str})
    assert csv["persona_id"].tolist() == parquet["persona_id"].tolist()
    assert csv["customer_id"].tolist() == parquet["customer_id"].tolist()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--engine", "local", "--file", "in.csv"], "needs --out"),
        (["--file", "in.csv", "--on-invalid", "flag"], "applies to --engine local"),
    ],
)
def test_the_command_refuses_options_that_do_not_fit_the_engine(
    argv, says, tmp_path, monkeypatch, caplog
):
    from persona.cli import main

    monkeypatch.setenv("PERSONA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERSONA_ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # never asked
    assert main(["score", *argv]) == 2
    assert says in caplog.text


def test_text_columns_of_other_types_read_as_a_file_is_read():
    from persona.serving.record_batches import texts

    assert texts(pa.array([1, None, 2])).tolist() == ["1", None, "2"]
    assert texts(pa.array([1.0, 2.5, None])).tolist() == ["1", "2.5", None]
    coded = pa.array(["north", None, "south", "north"]).dictionary_encode()
    assert texts(coded).tolist() == ["north", None, "south", "north"]
    assert texts(pa.array(["a", None]), few=False).tolist() == ["a", None]
