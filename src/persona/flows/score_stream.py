"""Batch scoring in process: record batches -> the served model -> rows out, in bounded memory.

The embedded engine for big batches (``persona score --engine local``): no HTTP and no
DataFrame per batch. Each Arrow record batch (a Parquet row group, a CSV chunk, a slice of a
table) becomes the contract's arrays (``persona.serving.record_batches``), is checked and scored
by the function the API scores every request with (``invocations.check_and_score``: the same
rules, the same compiled fast path or pyfunc, so the same labels), and leaves as an Arrow table
of the columns the HTTP batch job writes: the id, the month when known, persona_id,
persona_name, model_name, model_version, scored_at. One batch is held in and one out, whatever
the input's size.

``on_invalid`` is the API's: ``reject`` (the default) stops at the first batch holding a row
that breaks a rule, naming field, rule, rows (0-based positions among the input's rows) and
their ids; the caller then keeps nothing. ``flag`` scores the valid rows and passes the others
on with no persona and a ``problems`` cell ("field: rule; ..."), as the API's CSV answer does,
and the outcome counts them by field and rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from persona.errors import InvalidInputError
from persona.serving.columns import check_columns
from persona.serving.contract import InputSpec
from persona.serving.invocations import ON_INVALID, Checked, check_and_score, renumbered
from persona.serving.model_store import ServedModel
from persona.serving.problems import RowProblem, rejection, rows_with_problems
from persona.serving.record_batches import batch_from_arrow, texts
from persona.serving.render import problems_text

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 100_000
TEXT_LEVELS = pa.dictionary(pa.int32(), pa.string())
IDS_SHOWN = 50  # ids of unscored rows listed in the outcome (the count is always whole)
ROWS_SHOWN = 5  # rows and ids listed per problem


class Sink(Protocol):
    """Where scored batches go (a Parquet/CSV file, a list for a table)."""

    def write(self, table: pa.Table) -> None: ...


@dataclass(frozen=True)
class StreamRequest:
    """What to score and how: the input's id and month columns, the policy for bad rows.

    ``month``: score only that month where the input has ``month_column``; label every row
    with it where the input has none (a file of one month). ``has_month``: the input carries
    ``month_column``.
    """

    id_column: str
    month_column: str | None = None
    has_month: bool = False
    month: str | None = None
    on_invalid: str = "reject"
    batch_rows: int = DEFAULT_BATCH_ROWS

    def __post_init__(self) -> None:
        if self.on_invalid not in ON_INVALID:
            raise InvalidInputError(
                f"on_invalid must be one of {list(ON_INVALID)}, got {self.on_invalid!r}"
            )
        if self.batch_rows < 1:
            raise InvalidInputError(f"rows per batch must be at least 1, got {self.batch_rows}")

    @property
    def month_out(self) -> str | None:
        """The month column of the results, when they have one."""
        return self.month_column if self.has_month or self.month else None

    def result_schema(self) -> pa.Schema:
        """The columns written: those of the HTTP batch job, plus ``problems`` under flag.

        Text with few values (month, persona name, model) is dictionary-encoded: written to
        Parquet without hashing each row, read back as plain text."""
        fields = [pa.field(self.id_column, pa.string())]
        if self.month_out:
            fields.append(pa.field(self.month_out, TEXT_LEVELS))
        fields += [
            pa.field("persona_id", pa.int64()),
            pa.field("persona_name", TEXT_LEVELS),
            pa.field("model_name", TEXT_LEVELS),
            pa.field("model_version", TEXT_LEVELS),
            pa.field("scored_at", TEXT_LEVELS),
        ]
        if self.on_invalid == "flag":
            fields.append(pa.field("problems", pa.string()))
        return pa.schema(fields)

    def columns_to_read(self, spec: InputSpec, available: Sequence[str]) -> list[str]:
        """The input columns scoring needs (id, features, month), or an error naming the
        missing ones: any other column is never read."""
        present = set(available)
        check_columns([c for c in available if c in spec.known], 0, spec)
        if self.id_column not in present:
            raise InvalidInputError(
                f"the input has no id column {self.id_column!r} (the model's schema names it); "
                f"its columns: {list(available)[:20]}"
            )
        wanted = {self.id_column, *spec.features}
        if self.has_month and self.month_column:
            wanted.add(self.month_column)
        return [c for c in available if c in wanted]


@dataclass
class _Tally:
    """Unscored rows across batches, by field and rule (first rows and ids kept)."""

    count: int = 0
    ids: list[str] = field(default_factory=list)
    problems: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def add(self, checked: Checked, positions: np.ndarray, ids: np.ndarray) -> None:
        """One batch's problems (rows local to the batch, ``positions`` in the input)."""
        flagged = _unscored(checked)
        self.count += int(flagged.size)
        room = IDS_SHOWN - len(self.ids)
        if room > 0:
            self.ids += [str(i) for i in ids[flagged[:room]]]
        for problem in checked.problems:
            key = (problem.kind, problem.field, problem.rule)
            entry = self.problems.setdefault(
                key,
                {
                    "kind": problem.kind,
                    "field": problem.field,
                    "rule": problem.rule,
                    "count": 0,
                    "rows": [],
                    "ids": [],
                    "expected": problem.expected,
                    "got": problem.got,
                },
            )
            entry["count"] += len(problem.rows)
            room = ROWS_SHOWN - len(entry["rows"])
            if room > 0:
                first = problem.rows[:room]
                entry["rows"] += positions[first].tolist()
                entry["ids"] += [str(i) for i in ids[first]]


@dataclass(frozen=True)
class StreamOutcome:
    """What a streamed scoring did, for the command's JSON summary."""

    rows_read: int
    scored_rows: int
    flagged_rows: int
    flagged_ids: tuple[str, ...]
    problems: tuple[dict[str, Any], ...]
    model_name: str
    model_version: str
    fast_path: bool
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The keys of the HTTP job's summary (``failed_rows`` > 0 exits 1), and the problems
        of the unscored rows by field and rule."""
        rate = self.rows_read / self.seconds if self.seconds > 0 else None
        return {
            "engine": "local",
            "rows_read": self.rows_read,
            "scored_rows": self.scored_rows,
            "failed_rows": self.flagged_rows,
            "failed_ids": list(self.flagged_ids),
            "problems": list(self.problems),
            "model_versions": [self.model_version],
            "model": {"name": self.model_name, "version": self.model_version},
            "fast_path": self.fast_path,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(rate) if rate else None,
        }


def score_stream(
    served: ServedModel,
    batches: Iterable[pa.RecordBatch],
    sink: Sink,
    request: StreamRequest,
    total_rows: int | None = None,
    progress: bool | None = None,
) -> StreamOutcome:
    """Score every batch with ``served`` into ``sink``; see the module for ``on_invalid``.

    Raises ``InvalidInputError`` (reject) naming the rows that break the contract; the caller
    discards what the sink holds then.
    """
    started = time.perf_counter()
    scored_at = datetime.now(UTC).isoformat(timespec="seconds")
    schema = request.result_schema()
    tally = _Tally()
    read = scored = 0
    disable = None if progress is None else not progress
    with (
        tqdm(total=total_rows, desc="score", unit="rows", disable=disable) as bar,
        _Overlapped(batches, sink) as stream,
    ):
        for record in stream:
            n = record.num_rows
            done = score_batch(served, record, request, scored_at, first_row=read, schema=schema)
            read += n
            if done is not None:
                if done.checked.problems:
                    ids = done.ids()
                    if request.on_invalid == "reject":
                        found = [renumbered(p, done.positions) for p in done.checked.problems]
                        raise _rejected(found, ids[_unscored(done.checked)])
                    tally.add(done.checked, done.positions, ids)
                stream.write(done.results)
                scored += done.checked.scored.n_rows
            bar.update(n)
    outcome = StreamOutcome(
        rows_read=read,
        scored_rows=scored,
        flagged_rows=tally.count,
        flagged_ids=tuple(tally.ids),
        problems=tuple(tally.problems.values()),
        model_name=served.name,
        model_version=served.version,
        fast_path=served.compiled is not None,
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "scored %d of %d rows with %s v%s in %.1fs (%s)",
        scored,
        read,
        served.name,
        served.version,
        outcome.seconds,
        "fast path" if outcome.fast_path else "pyfunc",
    )
    return outcome


@dataclass(frozen=True)
class BatchScores:
    """One input batch scored: the rows as written, what the checks found, and where the rows
    were in the input (0-based positions, after the month filter)."""

    record: pa.RecordBatch
    checked: Checked
    positions: np.ndarray
    results: pa.Table
    id_column: str

    def ids(self) -> np.ndarray:
        """The batch's ids as text, to name the rows that were not scored."""
        return _ids(self.record.column(self.id_column))


def score_batch(
    served: ServedModel,
    record: pa.RecordBatch,
    request: StreamRequest,
    scored_at: str,
    first_row: int = 0,
    schema: pa.Schema | None = None,
) -> BatchScores | None:
    """One record batch through the month filter, the contract's checks and the model (the
    compiled fast path, or the pyfunc when the model has none), as the result columns of
    ``request.result_schema()``; None when no row of the batch is of ``request.month``.

    Bad rows are never raised here: they come back unscored with their problems (and a
    ``problems`` cell under flag), and the caller applies ``request.on_invalid``. The one
    per-batch step of every batch engine: this process (``score_stream``) and Spark's executors
    (``persona.flows.score_spark``).
    """
    positions = np.arange(first_row, first_row + record.num_rows)
    if request.month and request.has_month:
        keep = _of_month(record.column(request.month_column), request.month)
        record, positions = record.filter(keep), positions[keep]
    if not record.num_rows:
        return None
    checked = check_and_score(served, batch_from_arrow(record, served.spec), "flag")
    schema = schema if schema is not None else request.result_schema()
    results = _results(record, checked, served, request, schema, scored_at)
    return BatchScores(record, checked, positions, results, request.id_column)


class _Overlapped:
    """The next batch read and the previous one written while this one is scored.

    Reading Parquet/CSV and writing Parquet run in C++ without the GIL, so on two cores they
    overlap the scoring instead of adding to it. At most three batches are in memory (being
    read, scored, written); reads and writes each stay in order, one at a time. A failure in
    either is raised here, in the caller's thread.
    """

    def __init__(self, batches: Iterable[pa.RecordBatch], sink: Sink) -> None:
        self._batches = iter(batches)
        self._sink = sink
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="score-io")
        self._writing: Future | None = None

    def __enter__(self) -> _Overlapped:
        return self

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        reading = self._pool.submit(next, self._batches, None)
        while (record := reading.result()) is not None:
            reading = self._pool.submit(next, self._batches, None)
            yield record

    def write(self, table: pa.Table) -> None:
        if self._writing is not None:
            self._writing.result()
        self._writing = self._pool.submit(self._sink.write, table)

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        try:
            if kind is None and self._writing is not None:
                self._writing.result()  # the last batch is written before the sink closes
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _of_month(column: pa.Array, month: str) -> np.ndarray:
    text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    return pc.fill_null(pc.equal(text, month), False).to_numpy(zero_copy_only=False)


def _unscored(checked: Checked) -> np.ndarray:
    """Positions (in the batch) of the rows that were not scored."""
    keep = np.zeros(checked.batch.n_rows, dtype=bool)
    if checked.valid is not None:
        keep[checked.valid] = True
    return np.flatnonzero(~keep)


def _rejected(found: Sequence[RowProblem], ids: np.ndarray) -> InvalidInputError:
    error = rejection(found)
    shown = ", ".join(str(i) for i in ids[:ROWS_SHOWN])
    more = ", ..." if len(ids) > ROWS_SHOWN else ""
    return InvalidInputError(
        f"{error.message} (rows are 0-based positions in the input; ids: {shown}{more}); "
        "nothing is kept — fix those rows, or score the valid ones and name the others with "
        "on_invalid=flag"
    )


def _ids(column: pa.Array) -> np.ndarray:
    """A batch's ids as text, to name the rows that were not scored."""
    return _id_column(column).to_numpy(zero_copy_only=False)


def _results(
    record: pa.RecordBatch,
    checked: Checked,
    served: ServedModel,
    request: StreamRequest,
    schema: pa.Schema,
    scored_at: str,
) -> pa.Table:
    """The batch's rows as written: input id and month, the persona, the model."""
    n = record.num_rows
    columns: list[pa.Array] = [_id_column(record.column(request.id_column))]
    if request.month_out:
        if request.has_month:
            columns.append(pc.cast(record.column(request.month_column), TEXT_LEVELS))
        else:
            columns.append(_constant(request.month, n))
    columns += [
        *_personas(checked),
        _constant(served.name, n),
        _constant(served.version, n),
        _constant(scored_at, n),
    ]
    if request.on_invalid == "flag":
        if checked.problems:
            text = problems_text(rows_with_problems(checked.problems, n))
            columns.append(pa.array([t or None for t in text], type=pa.string()))
        else:
            columns.append(pa.nulls(n, pa.string()))
    return pa.Table.from_arrays(columns, schema=schema)


def _id_column(column: pa.Array) -> pa.Array:
    """Ids as text, as the contract read them (an integer id as its digits, 7.0 as "7")."""
    kind = column.type
    if pa.types.is_string(kind):
        return column
    if pa.types.is_integer(kind) or pa.types.is_dictionary(kind) or pa.types.is_large_string(kind):
        return pc.cast(column, pa.string())
    return pa.array(texts(column, few=False), type=pa.string())


def _constant(value: str | None, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string())
    )


def _personas(checked: Checked) -> tuple[pa.Array, pa.Array]:
    """persona_id and persona_name of every row (null where unscored); the names from one per
    persona (a few), not one per row."""
    n = checked.batch.n_rows
    ids, names = checked.scores[0], checked.scores[1]
    if ids.dtype.kind not in "iu" or (len(ids) and ids.min() < 0):
        every_id, every_name, _, _ = checked.full_columns()
        persona_id = pa.array(every_id, type=pa.int64(), from_pandas=True)
        named = pa.array(every_name, type=pa.string(), from_pandas=True)
        return persona_id, pc.cast(named, TEXT_LEVELS)
    # persona_id -> its name; ids no row has get "" (Parquet takes no null in a dictionary)
    table = np.full(int(ids.max()) + 1 if len(ids) else 0, "", dtype=object)
    table[ids] = names  # every row of a persona carries its one name
    if checked.valid is None:
        every, mask = ids.astype(np.int64, copy=False), None
    else:
        every, mask = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
        every[checked.valid], mask[checked.valid] = ids, False
    indices = pa.array(every.astype(np.int32), mask=mask)
    named = pa.DictionaryArray.from_arrays(indices, pa.array(table, pa.string()))
    return pa.array(every, mask=mask), named
