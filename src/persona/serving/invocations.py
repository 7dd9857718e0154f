"""One request to ``/predict``, from body to answer: parse, check the contract, score, render.

A pure function of the served model and the request (the route only delegates here), so every
decision about what a client gets back is testable without a server: which rows are refused or
flagged, which columns were ignored, what is echoed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from persona.serving.contract import Batch, InputSpec, check_rows
from persona.serving.model_store import ServedModel
from persona.serving.payload import BINARY, CSV, negotiate, parse_request
from persona.serving.problems import (
    PayloadError,
    RowProblem,
    detail,
    fail,
    problem,
    rejection,
    rows_with_problems,
)
from persona.serving.render import PREDICTION_COLUMNS, Predictions, render_csv, render_json

ON_INVALID = ("reject", "flag")


@dataclass(frozen=True, eq=False)
class Answer:
    """What the route sends, and what the scoring log keeps (the rows that were scored)."""

    body: bytes
    media_type: str
    scored: Batch  # the scored rows (all of them unless some were flagged)
    scores: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # of the scored rows
    ignored_columns: tuple[str, ...]
    n_flagged: int


def _parameter_error(name: str, expected: str, got: str) -> PayloadError:
    found = detail("invalid_parameter", name, (), 0, expected, got)
    return fail("invalid_parameter", f"query parameter {name!r}", [found])


def parse_on_invalid(value: str | None) -> str:
    """``reject`` (default) or ``flag``; anything else is a 400 naming the parameter."""
    mode = (value or "reject").strip().lower()
    if mode not in ON_INVALID:
        raise _parameter_error("on_invalid", " or ".join(ON_INVALID), repr(value))
    return mode


def parse_echo(value: str | None) -> tuple[str, ...]:
    """Comma-separated input columns to echo back on each prediction."""
    names = tuple(dict.fromkeys(n.strip() for n in (value or "").split(",") if n.strip()))
    clash = [n for n in names if n in (*PREDICTION_COLUMNS, "problems")]
    if clash:
        raise _parameter_error("echo", "input columns (not prediction fields)", repr(clash))
    return names


@dataclass(frozen=True, eq=False)
class Checked:
    """A batch under the contract: what its rows got wrong, and the scores of the others."""

    batch: Batch  # every row, as parsed
    problems: list[RowProblem]  # row positions in ``batch``
    valid: np.ndarray | None  # positions of the scored rows; None when every row was scored
    scored: Batch  # those rows
    scores: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # of the scored rows

    def full_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """persona_id, persona_name, confidence, distance for every row (None/NaN: unscored)."""
        if self.valid is None:
            return self.scores
        return _scatter(self.scores, self.valid, self.batch.n_rows)


def check_and_score(served: ServedModel, batch: Batch, on_invalid: str = "reject") -> Checked:
    """The contract's rules on a parsed batch, then the model on the rows that keep them.

    ``reject``: any broken rule raises the 400's PayloadError naming field, rule and rows;
    ``flag``: the valid rows are scored and the others reported. A value the model cannot turn
    into a finite distance is one more problem of its row, under the same policy. The API and
    the in-process batch job (``persona.flows.score_stream``) both score through here.
    """
    spec = served.spec
    problems = [*batch.problems, *check_rows(batch, spec)]
    if problems and on_invalid == "reject":
        raise rejection(problems)
    n = batch.n_rows
    valid = _valid_rows(problems, n)
    scored = batch if valid is None else batch.subset(valid)
    scores, unscorable = _score(served, scored)
    if unscorable:
        if on_invalid == "reject":
            raise rejection(unscorable)
        rows = np.arange(n) if valid is None else valid
        problems += [renumbered(p, rows) for p in unscorable]
        valid = _valid_rows(problems, n)
        keep = np.ones(scored.n_rows, dtype=bool)
        for p in unscorable:
            keep[p.rows] = False
        scored = scored.subset(np.flatnonzero(keep))
        scores = tuple(column[keep] for column in scores)  # type: ignore[assignment]
    return Checked(batch, problems, valid, scored, scores)


def invocations(
    served: ServedModel,
    body: bytes,
    content_type: str | None,
    accept: str | None,
    on_invalid: str = "reject",
    echo: Sequence[str] = (),
) -> Answer:
    """Score one request; raises PayloadError for anything the client must fix."""
    output = negotiate(accept)
    spec = served.spec
    batch = parse_request(body, content_type, spec)
    echoed = _echo_columns(batch, spec, echo)
    checked = check_and_score(served, batch, on_invalid)
    n, valid = batch.n_rows, checked.valid
    predictions = Predictions(
        batch.ids,
        *checked.full_columns(),
        {"name": served.name, "version": served.version},
        id_column=spec.id_column or "customer_id",
        problems=rows_with_problems(checked.problems, n) if on_invalid == "flag" else None,
        echo=echoed,
        ignored_columns=batch.ignored_columns,
    )
    if output in BINARY:
        from persona.serving.payload_arrow import RENDERERS  # pyarrow only when asked for

        rendered = RENDERERS[output](predictions)
    else:
        rendered = render_csv(predictions) if output == CSV else render_json(predictions)
    return Answer(
        rendered,
        output,
        checked.scored,
        checked.scores,
        batch.ignored_columns,
        0 if valid is None else n - int(valid.size),
    )


def _echo_columns(batch: Batch, spec: InputSpec, echo: Sequence[str]) -> dict[str, list]:
    out: dict[str, list] = {}
    for name in echo:
        if name in batch.ignored_columns:
            out[name] = batch.read_ignored(name)
        elif name in spec.numeric:
            column = batch.numeric[:, spec.numeric.index(name)]
            out[name] = [None if v != v else v for v in column.tolist()]
        elif name in spec.categorical:
            out[name] = batch.categorical[spec.categorical.index(name)].tolist()
        else:
            sent = sorted({*spec.features, *batch.ignored_columns})
            raise _parameter_error("echo", f"columns of this request, e.g. {sent}", repr(name))
    return out


def _valid_rows(problems: Sequence[RowProblem], n: int) -> np.ndarray | None:
    """Positions of the rows without problems; None when every row is valid."""
    if not problems:
        return None
    ok = np.ones(n, dtype=bool)
    for found in problems:
        ok[found.rows] = False
    return np.flatnonzero(ok)


def _score(
    served: ServedModel, batch: Batch
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], list[RowProblem]]:
    """Scores of every row, and the rows whose value the model cannot turn into a distance.

    A value far beyond anything seen in training (say an income of 1e200) overflows the
    squared distances; such a row has no sensible persona or confidence, so it is a problem
    of that row, named by its most extreme feature, never a null confidence.
    """
    if batch.n_rows == 0:
        empty = np.empty(0)
        return (empty.astype(np.int64), empty.astype(object), empty, empty), []
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected just below
        scores = served.score(batch)
    finite = np.isfinite(scores[2]) & np.isfinite(scores[3])
    if finite.all():
        return scores, []
    rows = np.flatnonzero(~finite)
    numeric = batch.numeric[rows]
    blamed = np.nanargmax(np.where(np.isnan(numeric), -np.inf, np.abs(numeric)), axis=1)
    found = []
    for column in np.unique(blamed):
        name = served.spec.numeric[int(column)]
        where = rows[blamed == column]
        value = batch.numeric[where[0], column]
        found.append(
            problem(
                "unscorable_value",
                name,
                where,
                "a value the model can score (a finite distance to every persona)",
                f"{value:g}",
                "finite distance",
            )
        )
    return scores, found


def renumbered(found: RowProblem, positions: np.ndarray) -> RowProblem:
    """A problem found on a subset (or on one batch of a file), with its rows as positions in
    the whole batch (or file)."""
    return RowProblem(
        found.kind,
        found.field,
        positions[found.rows],
        found.expected,
        found.got,
        found.rule,
        found.examples,
    )


def _scatter(
    scores: tuple[np.ndarray, ...], valid: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full-length columns: the scored rows in place, nothing for the flagged ones."""
    persona_id = np.full(n, None, dtype=object)
    persona_name = np.full(n, None, dtype=object)
    confidence = np.full(n, np.nan)
    distance = np.full(n, np.nan)
    persona_id[valid] = scores[0].tolist()
    persona_name[valid] = scores[1]
    confidence[valid] = scores[2]
    distance[valid] = scores[3]
    return persona_id, persona_name, confidence, distance
