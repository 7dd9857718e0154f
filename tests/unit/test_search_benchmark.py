"""The search earns its keep: on the hard synthetic setting (make bench-search) it finds the
personas and their number where one KMeans with the true k on the raw columns does not.

Quality assertions on small draws (the benchmark itself runs 5 seeds of 3,000 rows)."""

from pathlib import Path

import pytest

from persona.data.catalogue import load_catalogue
from persona.model.params import load_params
from persona_tools.bench.search import HARD_CATALOGUE, render_table, run_seed

ROOT = Path(__file__).resolve().parents[2]
PARAMS = load_params(ROOT / "01_model/params.yaml")


@pytest.mark.parametrize("seed", [1, 2])
def test_default_search_beats_plain_kmeans_with_the_true_k(seed):
    catalogue = load_catalogue(HARD_CATALOGUE)
    result = run_seed(catalogue, PARAMS, rows=1500, seed=seed)
    assert result.k_chosen == result.true_k == 6
    assert result.ari_default >= 0.8
    assert result.ari_plain_kmeans <= result.ari_default - 0.15
    # what it did: the heavy-tailed amounts in log scale, the signal-free columns left out
    assert set(result.dropped) == set(catalogue.shared)
    assert {"annual_income", "avg_basket_value"} <= set(result.logged)
    table = render_table([result])
    assert f"{result.ari_default:.3f}" in table and "1/1" in table
