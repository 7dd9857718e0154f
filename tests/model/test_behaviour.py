"""Behaviour of the default search on the synthetic personas (default params, real fits)."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.model.build import train_in_memory
from persona.model.naming import catalogue_personas
from persona.model.params import load_params
from persona.model.search import run_search
from persona.model.selection import select_winner

ROOT = Path(__file__).resolve().parents[2]
PARAMS = load_params(ROOT / "01_model/params.yaml")
ROWS = 10_000


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(ROOT / "00_create_data/personas.yaml")


@pytest.fixture(scope="module")
def trained(catalogue):
    frame = generate_snapshot(catalogue, ROWS, seed=21, missing_rate=0.01, progress=False)
    built, winner = train_in_memory(frame, catalogue.schema, PARAMS, catalogue_personas(catalogue))
    return frame, built, winner


def test_recovers_true_personas(trained):
    frame, built, _ = trained
    assert adjusted_rand_score(frame.true_persona, built.names) >= 0.9
    # names come from the catalogue, and they are the right ones
    assert (built.names == frame.true_persona.to_numpy()).mean() >= 0.95


def test_every_row_is_assigned_with_bounded_confidence(trained):
    frame, built, _ = trained
    scored = built.model.predict(None, frame)
    assert len(scored) == len(frame) and scored.persona_name.notna().all()
    assert scored.confidence.between(0, 1).all() and (scored.distance >= 0).all()


def test_chosen_k_is_the_number_of_personas_for_most_seeds(catalogue):
    hits = []
    for seed in range(5):
        frame = generate_snapshot(catalogue, ROWS, seed=100 + seed, progress=False)
        result = run_search(frame, catalogue.schema, PARAMS, progress=False)
        hits.append(select_winner(result.candidates, PARAMS).k == len(catalogue.personas))
    assert sum(hits) >= 4, hits


def test_same_seed_same_labels(catalogue, trained):
    frame, built, winner = trained
    again, winner_again = train_in_memory(
        frame, catalogue.schema, PARAMS, catalogue_personas(catalogue)
    )
    assert winner_again == winner
    assert (again.names == built.names).all()


def test_shuffled_rows_keep_each_customers_persona(catalogue, trained):
    frame, built, _ = trained
    shuffled = frame.sample(frac=1.0, random_state=5).reset_index(drop=True)
    other, _ = train_in_memory(shuffled, catalogue.schema, PARAMS, catalogue_personas(catalogue))
    original = dict(zip(frame.customer_id, built.names, strict=True))
    agree = np.mean(
        [original[c] == n for c, n in zip(shuffled.customer_id, other.names, strict=True)]
    )
    assert agree == 1.0


def test_retraining_on_a_fresh_sample_keeps_persona_names(catalogue, trained):
    _, built, _ = trained
    production_personas = list({p.name: p for p in built.model.personas.values()}.values())
    fresh = generate_snapshot(catalogue, ROWS, seed=77, progress=False)
    retrained, _ = train_in_memory(fresh, catalogue.schema, PARAMS, production_personas)
    customers = generate_snapshot(catalogue, ROWS, seed=999, progress=False)
    before = built.model.predict(None, customers).persona_name
    after = retrained.model.predict(None, customers).persona_name
    assert (before == after).mean() >= 0.98
