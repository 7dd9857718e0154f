"""Champion/challenger: the decision uses promotion.metric, in that metric's direction."""

from __future__ import annotations

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
from persona.model.evaluate import decide_promotion
from persona.model.params import SearchParams, load_params

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schema_from_dict({"id_column": "id", "numeric_features": {"x": {}, "y": {}}})
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
