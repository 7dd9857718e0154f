"""The checks every request format shares: size, columns, encoding, numbers, ignored columns.

JSON and CSV bodies are parsed by their own modules (``payload_json``, ``payload_csv``); both end
in the same arrays and call these, so a batch is refused for the same reasons in the same words
whatever its format.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from persona.serving.contract import InputSpec
from persona.serving.problems import PayloadError, RowProblem, detail, fail, problem


def empty_batch(layout: str) -> PayloadError:
    found = detail("empty_batch", None, (), 0, "at least one customer", f"0 rows ({layout})")
    return fail("empty_batch", "the batch is empty", [found])


def check_size(n: int, spec: InputSpec, layout: str) -> None:
    if n == 0:
        raise empty_batch(layout)
    if n > spec.max_rows:
        found = detail("too_many_rows", None, (), n, f"at most {spec.max_rows} rows", f"{n} rows")
        raise fail(
            "too_many_rows",
            f"the batch has {n} rows; the limit is {spec.max_rows} per request, split it",
            [found],
            413,
        )


def check_columns(
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
            expected = (
                "numeric feature column"
                if name in spec.numeric
                else "date column" if name in spec.dates else "categorical feature column"
            )
            details.append(detail("missing_columns", name, everyone, n, expected, "absent"))
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


def check_unique(columns: Sequence[str]) -> None:
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


def invalid_encoding(body: bytes) -> PayloadError:
    """A body that is not UTF-8, with the byte offset of the first bad byte."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        got, position = f"byte 0x{body[exc.start]:02x} ({exc.reason})", exc.start
    else:  # pragma: no cover - callers only come here after a decode error
        got, position = "text the decoder refused", 0
    found = detail("invalid_encoding", None, (), 0, "UTF-8 text", got, position=position)
    return fail("invalid_encoding", f"body is not valid UTF-8 at byte {position}", [found])


def ignored_columns(present: set[str], spec: InputSpec) -> tuple[str, ...]:
    """The columns sent that the model does not take (declared ones, or any when allowed)."""
    return tuple(sorted(present - spec.known.difference(spec.ignored)))


def check_numeric(numeric: np.ndarray, spec: InputSpec, found: list[RowProblem]) -> None:
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
