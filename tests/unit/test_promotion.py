"""Champion/challenger: the decision uses promotion.metric, in that metric's direction."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from persona.data.schema import schema_from_dict
from persona.errors import ConfigurationError
from persona.flows.monitor import Retrained
from persona.model import holdout
from persona.model.evaluate import (
    Labelled,
    decide_promotion,
    decide_retrain_promotion,
    promotion_rule,
)
from persona.model.params import SearchParams, load_params
from persona.values import from_plain, to_plain

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schema_from_dict({"id_column": "id", "numeric_features": {"x": {}, "y": {}}})
SCHEMA_WITH_MONTH = schema_from_dict(
    {"id_column": "id", "month_column": "month", "numeric_features": {"x": {}, "y": {}}}
)
SCORERS = {
    "silhouette": silhouette_score,
    "calinski_harabasz": calinski_harabasz_score,
    "davies_bouldin": davies_bouldin_score,
}


def _two_long_blobs(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    top = np.c_[rng.normal(0, 3, n), rng.normal(6, 0.5, n)]
    bottom = np.c_[rng.normal(0, 3, n), rng.normal(0, 0.5, n)]
    return pd.DataFrame(np.r_[bottom, top], columns=["x", "y"])


HOLDOUT = _two_long_blobs()
X = HOLDOUT.to_numpy()
BLOB = (X[:, 1] > 3).astype(int)
# Three partitions of the same customers on which the metrics disagree (checked below):
# each blob whole, each blob cut in two along its length, each blob cut in four.
LABELS = {
    "two": BLOB,
    "four": BLOB * 2 + (X[:, 0] > 0),
    "eight": BLOB * 4 + np.digitize(X[:, 0], [-3, 0, 3]),
}
# (challenger, production) -> promoted?, per metric: each metric decides differently.
PAIRS = (("four", "two"), ("eight", "four"))
EXPECTED = {
    "silhouette": (False, False),  # prefers fewer, whole blobs
    "calinski_harabasz": (True, True),  # prefers more clusters
    "davies_bouldin": (True, False),  # lower is better: four < two, but eight > four
}


def _estimator():
    """Identity preprocessing: the scores are those of the raw points."""
    return Pipeline([("pre", FunctionTransformer(np.asarray)), ("model", KMeans(2, n_init=1))]).fit(
        HOLDOUT
    )


def _decide(metric: str, challenger: str, production: str | None, margin: float = 0.001):
    params = replace(SearchParams(), promotion_metric=metric, promotion_margin=margin)
    return decide_promotion(
        _estimator(),
        LABELS[challenger],
        None if production is None else LABELS[production],
        HOLDOUT,
        SCHEMA,
        params,
        alias="live",
    )


def test_the_fixture_partitions_really_split_the_metrics():
    scores = {m: {k: f(X, lab) for k, lab in LABELS.items()} for m, f in SCORERS.items()}
    assert (
        scores["silhouette"]["two"] > scores["silhouette"]["four"] > scores["silhouette"]["eight"]
    )
    assert (
        scores["calinski_harabasz"]["eight"]
        > scores["calinski_harabasz"]["four"]
        > scores["calinski_harabasz"]["two"]
    )
    assert scores["davies_bouldin"]["four"] < scores["davies_bouldin"]["eight"]
    assert scores["davies_bouldin"]["four"] < scores["davies_bouldin"]["two"]


@pytest.mark.parametrize("metric", sorted(EXPECTED))
def test_the_decision_uses_the_configured_metric(metric):
    for (challenger, production), promoted in zip(PAIRS, EXPECTED[metric], strict=True):
        decision = _decide(metric, challenger, production)
        assert decision.promote is promoted, (metric, challenger, production, decision.reason)
        assert decision.alias == ("live" if promoted else "challenger")
        assert decision.challenger_score == pytest.approx(SCORERS[metric](X, LABELS[challenger]))
        assert decision.production_score == pytest.approx(SCORERS[metric](X, LABELS[production]))
        assert decision.reason.startswith(f"challenger {metric} ")


def test_davies_bouldin_margin_counts_downwards():
    """four beats two by ~0.16 in Davies-Bouldin: a margin below that promotes, above it not."""
    gap = davies_bouldin_score(X, LABELS["two"]) - davies_bouldin_score(X, LABELS["four"])
    assert 0.1 < gap < 0.2
    wins = _decide("davies_bouldin", "four", "two", margin=0.1)
    assert wins.promote and "<= production" in wins.reason and "- margin 0.1" in wins.reason
    loses = _decide("davies_bouldin", "four", "two", margin=0.2)
    assert not loses.promote and "> production" in loses.reason
    # the same margin added, not subtracted, would promote the worse (higher) one: it must not
    assert not _decide("davies_bouldin", "two", "four", margin=0.0).promote


def test_nothing_in_production_promotes_to_the_given_alias():
    decision = _decide("calinski_harabasz", "two", None)
    assert (decision.promote, decision.alias, decision.production_score) == (True, "live", None)
    assert decision.reason == "no model in production"


@pytest.mark.parametrize("metric", sorted(EXPECTED))
def test_every_accepted_promotion_metric_loads(tmp_path, metric):
    raw = yaml.safe_load((ROOT / "01_model/params.yaml").read_text())
    raw["promotion"]["metric"] = metric
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_params(path).promotion_metric == metric


def test_an_unknown_promotion_metric_is_refused_naming_file_and_key(tmp_path):
    raw = yaml.safe_load((ROOT / "01_model/params.yaml").read_text())
    raw["promotion"]["metric"] = "ari"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigurationError) as raised:
        load_params(path)
    message = str(raised.value)
    assert str(path) in message and "promotion.metric" in message and "'ari'" in message
    assert "silhouette, calinski_harabasz, davies_bouldin" in message


# --------------------------------------------- a retrain: the current period decides, a guard


def _retrain(current: tuple[str, str], reference: tuple[str, str] | None, loss: float = 0.05):
    """Retrain decision on HOLDOUT as both periods' held-out rows, silhouette."""
    params = replace(
        SearchParams(), promotion_margin=0.01, promotion_max_reference_loss=loss, seed=1
    )
    labelled = Labelled(HOLDOUT, LABELS[current[0]], LABELS[current[1]])
    guard = None
    if reference is not None:
        guard = Labelled(HOLDOUT, LABELS[reference[0]], LABELS[reference[1]])
    return decide_retrain_promotion(_estimator(), labelled, guard, SCHEMA, params, alias="live")


def test_a_retrain_is_decided_on_the_current_holdout_and_records_both_pairs():
    decision = _retrain(current=("two", "four"), reference=("two", "two"))
    assert decision.promote and decision.alias == "live"
    assert decision.challenger_score == pytest.approx(silhouette_score(X, LABELS["two"]))
    assert decision.production_score == pytest.approx(silhouette_score(X, LABELS["four"]))
    assert decision.reference_challenger_score == decision.reference_production_score
    assert decision.reason.startswith("current holdout: challenger silhouette ")
    assert "reference holdout: challenger " in decision.reason and "NOT" not in decision.reason
    assert decision.rule == (
        "silhouette: challenger >= production + 0.01 on the current holdout, "
        "and >= production - 0.05 on the reference holdout"
    )
    lost = _retrain(current=("four", "two"), reference=("two", "two"))
    assert not lost.promote and lost.alias == "challenger"


def test_the_guard_refuses_a_challenger_much_worse_on_the_reference_customers_and_says_so():
    gap = silhouette_score(X, LABELS["two"]) - silhouette_score(X, LABELS["eight"])
    assert gap > 0.05  # the challenger "eight" is that much worse on the old customers
    refused = _retrain(current=("two", "four"), reference=("eight", "two"))
    assert not refused.promote and refused.alias == "challenger"
    assert (
        "NOT promoted" in refused.reason and "promotion.max_reference_loss 0.05" in refused.reason
    )
    assert refused.reference_challenger_score < refused.reference_production_score
    # a looser guard lets the same challenger through, with the same scores recorded
    allowed = _retrain(current=("two", "four"), reference=("eight", "two"), loss=gap + 0.01)
    assert allowed.promote and allowed.reference_challenger_score == pytest.approx(
        refused.reference_challenger_score
    )


def test_without_reference_rows_the_current_holdout_alone_decides():
    decision = _retrain(current=("two", "four"), reference=None)
    assert decision.promote and decision.reference_challenger_score is None
    assert decision.rule.endswith("on the reference holdout")


def test_a_plain_training_run_decides_as_before_with_its_rule():
    decision = _decide("silhouette", "two", "four", margin=0.01)
    assert decision.promote and decision.reason.startswith("challenger silhouette ")
    assert (
        decision.reference_challenger_score is None and decision.reference_production_score is None
    )
    assert decision.rule == "silhouette: challenger >= production + 0.01 on the holdout"
    params = replace(SearchParams(), promotion_metric="davies_bouldin", promotion_margin=0.1)
    assert promotion_rule(params, guarded=True) == (
        "davies_bouldin: challenger <= production - 0.1 on the current holdout, "
        "and <= production + 0.05 on the reference holdout"
    )


def _periods(n: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    reference = pd.DataFrame(
        {"id": [f"C{i}" for i in range(n)], "month": ["2026-01"] * n, "x": 0.0, "y": 0.0}
    )
    current = reference.assign(month="2026-03", x=1.0)
    return reference, current


def test_a_retrain_holds_out_current_customers_by_id_and_reference_rows_by_key():
    schema = SCHEMA_WITH_MONTH
    reference, current = _periods()
    frame = pd.concat([reference, current], ignore_index=True)
    split = holdout.split_periods(frame, schema, 0.2, current[["id", "month"]])
    assert (split.holdout["month"] == "2026-03").all()
    assert (split.reference_holdout["month"] == "2026-01").all()
    # the current period's held-out customers are those every split holds out (by id)
    plain = holdout.split_holdout(current, schema, 0.2)
    assert set(split.holdout["id"]) == set(plain.holdout["id"])
    # no held-out customer of the current period trains the challenger in any month
    assert not set(split.holdout["id"]) & set(split.train["id"])
    assert len(split.train) + len(split.holdout) + len(split.reference_holdout) == len(frame)
    assert 0.15 * len(reference) < len(split.reference_holdout) < 0.5 * len(reference)
    # reproducible: another row order holds out the same rows
    shuffled = holdout.split_periods(
        frame.sample(frac=1, random_state=3), schema, 0.2, current[["id", "month"]]
    )
    for mine, theirs in zip(
        (split.holdout, split.reference_holdout),
        (shuffled.holdout, shuffled.reference_holdout),
        strict=True,
    ):
        assert set(zip(mine["id"], mine["month"], strict=True)) == set(
            zip(theirs["id"], theirs["month"], strict=True)
        )


def test_a_retrain_without_the_key_columns_is_refused_naming_them():
    reference, current = _periods(20)
    with pytest.raises(ConfigurationError, match=r"\['month'\] missing"):
        holdout.split_periods(
            reference.drop(columns="month"), SCHEMA_WITH_MONTH, 0.2, current[["id", "month"]]
        )


def test_max_reference_loss_loads_and_a_negative_one_is_refused_naming_the_key(tmp_path):
    raw = yaml.safe_load((ROOT / "01_model/params.yaml").read_text())
    assert load_params(ROOT / "01_model/params.yaml").promotion_max_reference_loss == 0.05
    raw["promotion"]["max_reference_loss"] = -0.1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigurationError) as raised:
        load_params(path)
    message = str(raised.value)
    assert "promotion.max_reference_loss" in message and "-0.1" in message and ">= 0" in message


def test_a_retrained_result_with_its_scores_crosses_the_mage_boundary():
    retrained = Retrained(
        "3", "production", True, "current holdout: ...", 900, False, 0.53, math.nan, 0.5, 0.49, "r"
    )
    back = from_plain(Retrained, json.loads(json.dumps(to_plain(retrained))))
    # a NaN score (a one-cluster labelling) is no score: None, as JSON holds it
    assert back.challenger_score == 0.53 and back.production_score is None
    assert (back.reference_challenger_score, back.rule) == (0.5, "r")
    old = {k: v for k, v in to_plain(retrained).items() if "score" not in k and k != "rule"}
    assert from_plain(Retrained, old).challenger_score is None  # a block output of before


def test_the_guard_refuses_a_challenger_with_one_cluster_on_the_reference_customers():
    params = replace(SearchParams(), promotion_margin=0.01, seed=1)
    current = Labelled(HOLDOUT, LABELS["two"], LABELS["four"])
    reference = Labelled(HOLDOUT, np.zeros(len(HOLDOUT), dtype=int), LABELS["two"])
    decision = decide_retrain_promotion(
        _estimator(), current, reference, SCHEMA, params, alias="live"
    )
    assert not decision.promote and "NOT promoted" in decision.reason
    assert math.isnan(decision.reference_challenger_score)
