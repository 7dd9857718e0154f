from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.errors import PersonaError
from persona.model.naming import catalogue_personas, match_personas
from persona.model.params import load_params
from persona.model.preprocess import build_preprocessor, prepare_features
from persona.model.search import Candidate
from persona.model.selection import select_winner

ROOT = Path(__file__).resolve().parents[2]
PARAMS = load_params(ROOT / "01_model/params.yaml")


def cand(name, k, silhouette, stability=0.99, family="kmeans"):
    return Candidate(name, family, k, {}, {"silhouette": silhouette, "stability": stability}, None)


def test_best_stable_silhouette_wins():
    pool = [cand("a", 4, 0.40), cand("b", 6, 0.52), cand("c", 7, 0.60, stability=0.5)]
    assert select_winner(pool, PARAMS).name == "b"


def test_near_tie_goes_to_fewer_clusters_then_simpler_family():
    pool = [
        cand("gmm6", 6, 0.521, family="gaussian_mixture"),
        cand("km6", 6, 0.519),
        cand("km7", 7, 0.523),
    ]
    assert select_winner(pool, PARAMS).name == "km6"


def test_nan_and_missing_metrics_are_skipped():
    pool = [cand("nan", 5, float("nan")), cand("none", 5, None), cand("ok", 6, 0.3)]
    assert select_winner(pool, PARAMS).name == "ok"
    with pytest.raises(PersonaError, match="no candidate"):
        select_winner([cand("nan", 5, float("nan"))], PARAMS)


def test_unstable_pool_still_picks_one():
    pool = [cand("a", 4, 0.4, stability=0.2), cand("b", 5, 0.5, stability=0.3)]
    assert select_winner(pool, PARAMS).name == "b"


@pytest.fixture(scope="module")
def fitted():
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    frame = generate_snapshot(catalogue, 5000, seed=3, progress=False)
    pre = build_preprocessor(catalogue.schema, PARAMS.preprocessing).fit(
        prepare_features(frame, catalogue.schema)
    )
    return catalogue, pre


def profiles_from(references, schema, order):
    rows = []
    for index in order:
        ref = references[index]
        rows.append({**ref.numeric, **ref.categorical, "share": ref.share})
    return pd.DataFrame(rows)


def test_hungarian_matching_recovers_names_in_any_cluster_order(fitted):
    catalogue, pre = fitted
    references = catalogue_personas(catalogue)
    order = [3, 0, 5, 1, 4, 2]
    mapping = match_personas(
        profiles_from(references, catalogue.schema, order),
        references,
        pre,
        catalogue.schema,
        1.5,
        "New",
    )
    assert [mapping[i].name for i in range(6)] == [references[j].name for j in order]
    assert [mapping[i].persona_id for i in range(6)] == order


def test_unmatched_cluster_gets_a_new_name_and_id(fitted):
    catalogue, pre = fitted
    references = catalogue_personas(catalogue)
    profiles = profiles_from(references, catalogue.schema, range(6))
    odd = dict(profiles.iloc[0])
    odd.update(age=27, purchase_frequency=30, web_visits=80, avg_basket_value=260)
    profiles = pd.concat([profiles, pd.DataFrame([odd])], ignore_index=True)
    mapping = match_personas(profiles, references, pre, catalogue.schema, 1.5, "Emerging Segment")
    assert mapping[6].name == "Emerging Segment 1"
    assert mapping[6].persona_id == 6
    assert len({p.name for p in mapping.values()}) == 7


def test_no_references_names_every_cluster_new(fitted):
    catalogue, pre = fitted
    profiles = profiles_from(catalogue_personas(catalogue), catalogue.schema, range(2))
    mapping = match_personas(profiles, [], pre, catalogue.schema, 1.5, "Segment")
    assert [mapping[i].name for i in range(2)] == ["Segment 1", "Segment 2"]
    assert np.isnan(mapping[0].matched_distance or np.nan)
