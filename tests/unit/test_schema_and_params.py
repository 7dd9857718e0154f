from pathlib import Path

import pytest

from persona.data.schema import load_schema, schema_from_dict
from persona.errors import ConfigurationError
from persona.model.params import load_params, params_from_dict

ROOT = Path(__file__).resolve().parents[2]


def test_user_schema_with_own_column_names():
    schema = schema_from_dict(
        {
            "id_column": "cust_no",
            "month_column": "period",
            "numeric_features": {"Spend": {"min": 0}, "Visits": {"integer": True}},
            "categorical_features": {"Store": None},
        }
    )
    assert schema.features == ["Spend", "Visits", "Store"]
    assert schema.key == ["cust_no", "period"]
    assert schema.truth_column is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"numeric_features": {"a": {}}}, "'id_column' is required"),
        ({"id_column": "id"}, "at least one column"),
        ({"id_column": "id", "numeric_features": {"a": {"mn": 1}}}, "unknown keys"),
        (
            {"id_column": "id", "numeric_features": {"a": {}}, "categorical_features": {"a": None}},
            "both numeric and categorical",
        ),
        ({"id_column": "id", "numeric_features": {"a": {}}, "max_null_share": 2}, "max_null_share"),
    ],
)
def test_schema_errors_name_the_key(raw, message):
    with pytest.raises(ConfigurationError, match=message):
        schema_from_dict(raw, source="my.yaml")


def test_missing_schema_file_is_named(tmp_path):
    with pytest.raises(ConfigurationError, match="schema file not found"):
        load_schema(tmp_path / "nope.yaml")


def test_default_params_cover_the_required_families():
    params = load_params(ROOT / "01_model/params.yaml")
    assert {"kmeans", "minibatch_kmeans", "gaussian_mixture"} <= set(params.candidates)
    assert params.candidates["gaussian_mixture"]["covariance_type"]
    assert params.promotion_margin > 0
    assert params.to_flat_dict()["pre.scale"] == "standard"
    # the search plans its features (log1p of heavy tails, signal-free columns left out)
    assert params.preprocessing.log_tail_share and params.preprocessing.drop_uninformative_p


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"candidates": {"dbscan": {"k": [3]}}}, "candidates must name"),
        ({"candidates": {"kmeans": {"k": [1]}}}, "integers >= 2"),
        (
            {"candidates": {"kmeans": {"k": [3]}}, "preprocessing": {"scale": "minmax"}},
            "standard|robust",
        ),
        (
            {"candidates": {"kmeans": {"k": [3]}}, "split": {"holdout_fraction": 0}},
            "holdout_fraction",
        ),
        (
            {"candidates": {"kmeans": {"k": [3]}}, "selection": {"metric": "bic"}},
            "selection.metric",
        ),
        (
            {"candidates": {"kmeans": {"k": [3]}}, "preprocessing": {"log_tail_share": "yes"}},
            "log_tail_share",
        ),
        (
            {"candidates": {"kmeans": {"k": [3]}}, "preprocessing": {"log_tail_share": 0}},
            "log_tail_share",
        ),
        (
            {"candidates": {"kmeans": {"k": [3]}}, "preprocessing": {"drop_uninformative_p": 1}},
            "drop_uninformative_p",
        ),
        (
            {"candidates": {"kmeans": {"k": [3]}}, "selection": {"stability_reference_rows": 0}},
            "stability_reference_rows",
        ),
    ],
)
def test_params_errors_name_the_key(raw, message):
    with pytest.raises(ConfigurationError, match=message):
        params_from_dict(raw)
