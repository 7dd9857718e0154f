"""Data contract checks that run before anything trains (pandera under the hood).

A failed validation raises DataValidationError carrying a report that names the column,
the rule, how many rows broke it and a few offending rows, so a person can fix the source.
The raw columns are checked as the schema declares them (date columns must hold dates); derived
features are then computed from them and checked for their null share and declared ranges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from persona.data.months import MONTH_PATTERN
from persona.data.rules import Rule, categorical_rules, date_rules, id_rules, numeric_rules
from persona.data.schema import DatasetSchema
from persona.errors import DataValidationError

logger = logging.getLogger(__name__)

EXAMPLES = 3


@dataclass(frozen=True)
class Finding:
    column: str
    rule: str
    count: int
    examples: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        shown = "; ".join(str(example) for example in self.examples)
        return f"column {self.column!r} broke rule {self.rule!r} in {self.count} row(s)" + (
            f", e.g. {shown}" if shown else ""
        )


@dataclass(frozen=True)
class ValidationReport:
    n_rows: int
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_text(self) -> str:
        if self.ok:
            return f"validation passed ({self.n_rows} rows)"
        lines = [f"validation failed: {len(self.findings)} problem(s) in {self.n_rows} rows"]
        lines += [f"  - {finding.describe()}" for finding in self.findings]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "n_rows": self.n_rows,
            "ok": self.ok,
            "findings": [vars(f) for f in self.findings],
        }


def _null_share_check(limit: float) -> pa.Check:
    return pa.Check(
        lambda s: s.isna().mean() <= limit,
        ignore_na=False,
        name=f"null share <= {limit:.0%}",
    )


def _check(rule: Rule) -> pa.Check:
    """A pandera check of one shared rule (the scoring API applies the same ``Rule``)."""
    return pa.Check(lambda s: pd.Series(~rule.broken(s.to_numpy()), index=s.index), name=rule.name)


def build_pandera_schema(schema: DatasetSchema) -> pa.DataFrameSchema:
    """The pandera form of the contract; numeric columns must already be numeric dtype."""
    columns: dict[str, pa.Column] = {
        schema.id_column: pa.Column(nullable=False, checks=[_check(rule) for rule in id_rules()]),
        schema.month_column: pa.Column(
            str, nullable=False, checks=[pa.Check.str_matches(MONTH_PATTERN)]
        ),
    }
    for name in schema.numeric:
        checks = [_null_share_check(schema.max_null_share)]
        checks += [_check(rule) for rule in numeric_rules(schema, name)]
        columns[name] = pa.Column(nullable=True, checks=checks)
    for name in schema.date_columns:  # read by derived features or not, they must parse
        checks = [_null_share_check(schema.max_null_share)]
        checks += [_check(rule) for rule in date_rules(schema, name)]
        columns[name] = pa.Column(nullable=True, checks=checks)
    for name in schema.categorical:
        checks = [_null_share_check(schema.max_null_share)]
        checks += [_check(rule) for rule in categorical_rules(schema, name)]
        columns[name] = pa.Column(nullable=True, checks=checks)
    return pa.DataFrameSchema(columns, unique=schema.key, report_duplicates="all", strict=False)


def _examples(frame: pd.DataFrame, index: list, id_column: str, column: str | None) -> list[dict]:
    rows = []
    for position in index[:EXAMPLES]:
        if position not in frame.index:
            continue
        row = {"row": int(position) if isinstance(position, int) else position}
        if id_column in frame.columns:
            row[id_column] = frame.at[position, id_column]
        if column and column in frame.columns:
            value = frame.at[position, column]
            row[column] = None if pd.isna(value) else value
        rows.append(row)
    return rows


def _dtype_findings(frame: pd.DataFrame, schema: DatasetSchema) -> tuple[list[Finding], set[str]]:
    findings, broken = [], set()
    for name in schema.numeric:
        if name not in frame.columns or pd.api.types.is_numeric_dtype(frame[name]):
            continue
        coerced = pd.to_numeric(frame[name], errors="coerce")
        bad = frame.index[coerced.isna() & frame[name].notna()].tolist()
        findings.append(
            Finding(
                name,
                f"numeric dtype (got {frame[name].dtype})",
                len(bad),
                _examples(frame, bad, schema.id_column, name),
            )
        )
        broken.add(name)
    return findings, broken


def validate_frame(frame: pd.DataFrame, schema: DatasetSchema) -> ValidationReport:
    """Check ``frame`` against ``schema`` and return every finding (never raises for data)."""
    findings: list[Finding] = []
    if len(frame) < schema.min_rows:
        findings.append(Finding("<table>", f"at least {schema.min_rows} rows", len(frame)))
    required = list(dict.fromkeys([*schema.key, *schema.features, *schema.date_columns]))
    missing = [c for c in required if c not in frame.columns]
    findings += [Finding(c, "column present", len(frame)) for c in missing]
    dtype_findings, broken = _dtype_findings(frame, schema)
    findings += dtype_findings
    contract = build_pandera_schema(schema)
    contract = contract.remove_columns([c for c in [*missing, *broken] if c in contract.columns])
    if any(c in missing for c in schema.key):
        contract = pa.DataFrameSchema(contract.columns, strict=False)
    try:
        contract.validate(frame, lazy=True)
    except SchemaErrors as errors:
        findings += _findings_from_pandera(errors.failure_cases, frame, schema)
    findings += _derived_findings(frame, schema, {*missing, *broken})
    report = ValidationReport(n_rows=len(frame), findings=findings)
    logger.info(report.to_text().splitlines()[0])
    return report


def _derived_findings(
    frame: pd.DataFrame, schema: DatasetSchema, unusable: set[str]
) -> list[Finding]:
    """Null share and declared ranges of the derived features, computed as the model computes
    them (today as the reference date unless the schema fixes one). A feature whose raw
    columns are absent or not numeric is skipped (those columns are already reported), and an
    unreadable date counts as missing (the date column's rule reports it)."""
    derived = schema.with_reference_date(datetime.now(UTC).date()).derived
    usable = tuple(f for f in derived if not unusable.intersection(f.columns))
    if not usable:
        return []
    values = replace(derived, features=usable).evaluate(frame, bad_dates="missing")
    computed = pd.DataFrame(values, index=frame.index)
    if schema.id_column in frame.columns:
        computed[schema.id_column] = frame[schema.id_column]
    inputs = schema.model_schema
    columns = {
        name: pa.Column(
            nullable=True,
            checks=[
                _null_share_check(schema.max_null_share),
                *(_check(rule) for rule in numeric_rules(inputs, name)),
            ],
        )
        for name in values
    }
    try:
        pa.DataFrameSchema(columns, strict=False).validate(computed, lazy=True)
    except SchemaErrors as errors:
        return _findings_from_pandera(errors.failure_cases, computed, schema)
    return []


def _findings_from_pandera(
    cases: pd.DataFrame, frame: pd.DataFrame, schema: DatasetSchema
) -> list[Finding]:
    findings = []
    cases = cases.copy()
    cases["column"] = cases["column"].fillna("<table>").astype(str)
    is_key_check = cases["check"].astype(str).str.contains("uniqueness")
    duplicates = sorted({i for i in cases.loc[is_key_check, "index"] if pd.notna(i)})
    if duplicates:
        findings.append(
            Finding(
                ", ".join(schema.key),
                "unique key (duplicate rows)",
                len(duplicates),
                _examples(frame, duplicates, schema.id_column, schema.month_column),
            )
        )
    for (column, check), group in cases[~is_key_check].groupby(["column", "check"], sort=False):
        if str(check).startswith("null share") and column in frame.columns:
            nulls = frame.index[frame[column].isna()].tolist()
            share = len(nulls) / max(len(frame), 1)
            findings.append(
                Finding(
                    column,
                    f"{check} (got {share:.1%})",
                    len(nulls),
                    _examples(frame, nulls, schema.id_column, column),
                )
            )
            continue
        index = [i for i in group["index"].tolist() if pd.notna(i)]
        findings.append(
            Finding(
                column,
                str(check),
                len(index) or len(group),
                _examples(frame, index, schema.id_column, column),
            )
        )
    return findings


def require_valid(frame: pd.DataFrame, schema: DatasetSchema) -> ValidationReport:
    """Validate and stop the run with the full report when anything is wrong."""
    report = validate_frame(frame, schema)
    if not report.ok:
        raise DataValidationError(report.to_text(), report=report)
    return report
