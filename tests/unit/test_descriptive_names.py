"""Segments that match no reference persona are named from their profile.

The data is a table shaped like a public marketing export (Income, Kidhome, Teenhome, Mnt*,
Recency, Education, Marital_Status; integer counts, a few missing incomes, title-case levels),
written to CSV and read back the way ``source=file`` reads it. Three segments are planted:
affluent wine and meat buyers without children, low-income young families, teen parents.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona.data.files import read_table, write_table
from persona.data.schema import schema_from_dict
from persona.data.validation import require_valid
from persona.model.build import train_in_memory
from persona.model.naming import (
    MAX_NAME_LENGTH,
    SEPARATOR,
    Evidence,
    cluster_profiles,
    descriptive_names,
    feature_words,
    match_personas,
    segment_evidence,
)
from persona.model.params import load_params
from persona.model.preprocess import build_preprocessor, prepare_features
from persona.model.profile import evidence_table, profile_html, profile_table

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PARAMS = replace(
    load_params(ROOT / "tests/fixtures/params_fast.yaml"),
    candidates={"kmeans": {"k": [2, 3, 4, 5], "n_init": 2}},
    stability_resamples=2,
    stability_sample=1000,
    silhouette_sample=1000,
)
SCHEMA = schema_from_dict(
    {
        "id_column": "ID",
        "numeric_features": {
            "Income": {"min": 0, "unit": "EUR"},
            "Kidhome": {"min": 0, "max": 3, "integer": True},
            "Teenhome": {"min": 0, "max": 3, "integer": True},
            "Recency": {"min": 0, "max": 99, "integer": True, "unit": "days"},
            "MntWines": {"min": 0, "integer": True, "unit": "EUR"},
            "MntFruits": {"min": 0, "integer": True, "unit": "EUR"},
            "MntMeatProducts": {"min": 0, "integer": True, "unit": "EUR"},
        },
        "categorical_features": {"Education": None, "Marital_Status": None},
    },
    source="marketing schema",
)
EDUCATION = ["Graduation", "PhD", "Master", "2n Cycle", "Basic"]
MARITAL = ["Married", "Together", "Single", "Divorced", "Widow"]
# segment: share, income (mean, sd), P(Kidhome=0,1,2), P(Teenhome=0,1,2), wine, fruit, meat
# (mean, sd), P(education level)
SEGMENTS = {
    "affluent": (
        0.3,
        (78_000, 8_000),
        (0.98, 0.02, 0),
        (0.85, 0.15, 0),
        (700, 200),
        (60, 25),
        (480, 150),
        (0.5, 0.28, 0.17, 0.05, 0),
    ),
    "young_family": (
        0.4,
        (33_000, 8_000),
        (0.1, 0.8, 0.1),
        (0.85, 0.15, 0),
        (40, 35),
        (6, 6),
        (25, 18),
        (0.48, 0.16, 0.16, 0.12, 0.08),
    ),
    "teen_parents": (
        0.3,
        (58_000, 7_000),
        (0.95, 0.05, 0),
        (0.05, 0.85, 0.1),
        (400, 120),
        (18, 10),
        (120, 50),
        (0.5, 0.25, 0.17, 0.08, 0),
    ),
}
# What each planted segment really differs in (feature -> direction): a name may say only these.
TRUTH = {
    "affluent": {"Income": 1, "MntWines": 1, "MntFruits": 1, "MntMeatProducts": 1, "Kidhome": -1},
    "young_family": {
        "Income": -1,
        "MntWines": -1,
        "MntFruits": -1,
        "MntMeatProducts": -1,
        "Kidhome": 1,
        "Teenhome": -1,
    },
    "teen_parents": {"Teenhome": 1, "Kidhome": -1, "MntFruits": -1, "MntMeatProducts": -1},
}
WORDS = {
    "income": "Income",
    "wine": "MntWines",
    "fruit": "MntFruits",
    "meat": "MntMeatProducts",
    "kidhome": "Kidhome",
    "teenhome": "Teenhome",
    "recency": "Recency",
}


def marketing_export(rows: int, seed: int, segments=SEGMENTS, first_id: int = 1000):
    """Rows like the public export: integer counts and spends, ~1% missing income."""
    rng = np.random.default_rng(seed)
    names = list(segments)
    shares = np.array([segments[n][0] for n in names], dtype=float)
    truth = rng.choice(names, size=rows, p=shares / shares.sum())
    records = []
    for i, segment in enumerate(truth):
        _, income, kid, teen, wine, fruit, meat, education = segments[segment]
        records.append(
            {
                "ID": first_id + i,
                "Income": max(1730.0, round(rng.normal(*income))),
                "Kidhome": int(rng.choice(3, p=kid)),
                "Teenhome": int(rng.choice(3, p=teen)),
                "Recency": int(rng.integers(0, 100)),
                "MntWines": int(max(0, rng.normal(*wine))),
                "MntFruits": int(max(0, rng.normal(*fruit))),
                "MntMeatProducts": int(max(0, rng.normal(*meat))),
                "Education": rng.choice(EDUCATION, p=education),
                "Marital_Status": rng.choice(MARITAL, p=[0.39, 0.26, 0.21, 0.1, 0.04]),
                "snapshot_month": "2024-06",
                "segment": segment,
            }
        )
    frame = pd.DataFrame(records)
    frame.loc[rng.random(rows) < 0.01, "Income"] = np.nan
    return frame


def exported(frame: pd.DataFrame, tmp: Path) -> pd.DataFrame:
    """Through a CSV file and back, as ``source=file`` reads a team's export."""
    read = read_table(write_table(frame, tmp / "marketing_campaign.csv"), SCHEMA.id_column)
    require_valid(read, SCHEMA)
    return read


def said(name: str) -> dict[str, int]:
    """Which features a name speaks of, and in which direction (+1 high, -1 low or none)."""
    found = {}
    for part in name.lower().split(SEPARATOR):
        words = part.replace("&", " ").replace(",", " ").split()
        sign = -1 if words[0] in ("low", "no") or words[:2] == ["very", "low"] else 1
        for word, feature in WORDS.items():
            if word in words:
                found[feature] = sign
    return found


def by_segment(frame: pd.DataFrame, names: np.ndarray) -> dict[str, str]:
    """The persona name most rows of each planted segment got."""
    table = pd.crosstab(frame["segment"], names)
    return {segment: str(table.loc[segment].idxmax()) for segment in table.index}


def _match(frame, labels, evidence, prefix: str = "Emerging Segment"):
    """match_personas with no references, on a preprocessor fitted to ``frame``."""
    features = prepare_features(frame, SCHEMA)
    preprocessor = build_preprocessor(SCHEMA, PARAMS.preprocessing).fit(features)
    profiles = cluster_profiles(frame, labels, SCHEMA)
    return match_personas(profiles, [], preprocessor, SCHEMA, 1.5, prefix, evidence=evidence)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    frame = exported(marketing_export(2240, seed=1), tmp_path_factory.mktemp("first"))
    built, winner = train_in_memory(frame, SCHEMA, PARAMS, [])
    return frame, built, winner


def test_each_segment_is_named_after_what_sets_it_apart(first):
    frame, built, winner = first
    assert winner.endswith("k3")
    names = by_segment(frame, built.names)
    assert len(set(names.values())) == 3
    for segment, name in names.items():
        spoken = said(name)
        assert len(spoken) >= 2, name
        assert spoken.items() <= TRUTH[segment].items(), (segment, name)
        assert len(name) <= MAX_NAME_LENGTH and "Emerging" not in name
    assert said(names["young_family"])["Income"] == -1
    assert said(names["teen_parents"])["Teenhome"] == 1
    assert any(said(names["affluent"]).get(f) == 1 for f in ("MntWines", "MntMeatProducts"))


def test_the_description_gives_the_evidence_and_the_persona_keeps_it(first):
    frame, built, _ = first
    personas = {p.name: p for p in built.model.personas.values()}
    young = personas[by_segment(frame, built.names)["young_family"]]
    assert young.description.startswith("Named from its profile: ")
    assert "; income " in young.description or ": income " in young.description
    assert "EUR vs " in young.description and "elsewhere" in young.description
    evidence = {e["feature"]: e for e in young.extra["evidence"]}
    assert evidence["Income"]["effect"] <= -0.5
    assert evidence["Income"]["segment"] < evidence["Income"]["rest"]
    assert all(abs(e["effect"]) >= 0.5 for e in evidence.values())


def test_a_retrain_on_a_fresh_export_keeps_the_names(first, tmp_path):
    frame, built, _ = first
    # as flows.train._references builds them from the served model
    references = list({p.name: p for p in built.model.personas.values()}.values())
    fresh = exported(marketing_export(2240, seed=2, first_id=5000), tmp_path)
    retrained, _ = train_in_memory(fresh, SCHEMA, PARAMS, references)
    before = {p.name: p.persona_id for p in built.model.personas.values()}
    after = {p.name: p.persona_id for p in retrained.model.personas.values()}
    assert after == before
    customers = marketing_export(1000, seed=3)
    agree = (
        built.model.predict(None, customers).persona_name
        == retrained.model.predict(None, customers).persona_name
    )
    assert agree.mean() >= 0.95


def test_the_report_shows_why_each_persona_got_its_name(first):
    frame, built, _ = first
    evidence = evidence_table(frame, built.names, SCHEMA)
    table = profile_table(frame, built.names, SCHEMA, evidence)
    for persona in built.model.personas.values():
        rows = evidence[evidence.persona == persona.name].sort_values("rank")
        named = [e["feature"] for e in persona.extra["evidence"]]
        assert list(rows.feature[: len(named)]) == named
        first_row = rows.iloc[0]
        assert (first_row.segment > first_row.rest) == (first_row.effect > 0)
        assert " elsewhere" in table.loc[persona.name, "evidence"]
    page = profile_html(table, evidence)
    assert "What sets each persona apart" in page and "MntWines" in page


def test_two_segments_alike_but_for_one_feature_get_names_that_say_which():
    """Big spenders without children who differ only in marital status: the same rows twice,
    70% married in one copy, 45% single in the other. Their first names clash."""
    spenders = marketing_export(600, seed=4, segments={"affluent": SEGMENTS["affluent"]})
    twins = spenders.assign(ID=spenders.ID + 10_000, segment="affluent_single")
    twentieth = np.arange(len(spenders)) % 20
    spenders["Marital_Status"] = np.where(twentieth < 14, "Married", "Together")
    twins["Marital_Status"] = np.select(
        [twentieth < 9, twentieth < 15], ["Single", "Married"], "Together"
    )
    rest = {k: v for k, v in SEGMENTS.items() if k != "affluent"}
    frame = pd.concat(
        [spenders, twins, marketing_export(1200, seed=5, segments=rest)], ignore_index=True
    )
    segment = {"affluent": 0, "affluent_single": 1, "young_family": 2, "teen_parents": 3}
    labels = frame.segment.map(segment).to_numpy()
    evidence = segment_evidence(frame, labels, SCHEMA)
    alone = {c: descriptive_names({c: evidence[c]})[c][0] for c in (0, 1)}
    assert alone[0] == alone[1]  # the clash this test is about

    mapping = _match(frame, labels, evidence)
    married, single = mapping[0].name, mapping[1].name
    assert len({p.name for p in mapping.values()}) == 4
    assert "mostly married" in married and "often single" in single
    assert said(married) == said(single) != {}  # the shared features stay, in the same words
    assert said(married).items() <= TRUTH["affluent"].items()
    assert max(len(married), len(single)) <= MAX_NAME_LENGTH
    named = {e["feature"] for e in mapping[0].extra["evidence"]}
    assert "Marital_Status" in named
    names = np.array([mapping[label].name for label in labels], dtype=object)
    report = evidence_table(frame, names, SCHEMA)
    assert named <= set(report.feature[report.persona == married])


def test_identical_segments_and_a_name_taken_by_a_reference_get_a_suffix():
    high = Evidence("Income", "income", "high income", 1.2, 80_000, 50_000, "high", "EUR")
    named = descriptive_names({0: [high], 1: [high]}, shares={0: 0.3, 1: 0.5})
    assert (named[1][0], named[0][0]) == ("High income", "High income (2)")
    taken = descriptive_names({0: [high]}, taken=["high income"])
    assert taken[0][0] == "High income (2)"


def test_when_nothing_stands_out_the_prefix_names_it():
    frame = marketing_export(900, seed=6, segments={"only": SEGMENTS["teen_parents"]})
    labels = np.random.default_rng(7).integers(0, 3, len(frame))
    evidence = segment_evidence(frame, labels, SCHEMA)
    assert not any(e.stands_out for items in evidence.values() for e in items)
    mapping = _match(frame, labels, evidence, prefix="Unnamed segment")
    assert sorted(p.name for p in mapping.values()) == [f"Unnamed segment {i}" for i in (1, 2, 3)]
    assert all("no feature sets apart" in p.description for p in mapping.values())
    assert all(p.extra["evidence"] == [] for p in mapping.values())
    names = np.array([mapping[label].name for label in labels], dtype=object)
    assert evidence_table(frame, names, SCHEMA).empty
    assert (profile_table(frame, names, SCHEMA).evidence == "").all()


@pytest.mark.parametrize(
    ("column", "unit", "words"),
    [
        ("annual_income", "EUR", "income"),
        ("MntWines", "", "wine spend"),
        ("MntMeatProducts", "", "meat spend"),
        ("MntGoldProds", "", "gold spend"),
        ("NumWebPurchases", "", "number of web purchases"),
        ("recency_days", "days", "recency"),
        ("web_visits", "visits/month", "web visits"),
        ("avg_basket_value", "EUR", "average basket value"),
        ("Kidhome", "", "kidhome"),
        ("Marital_Status", "", "marital status"),
    ],
)
def test_column_names_read_as_words(column, unit, words):
    assert feature_words(column, unit) == words
