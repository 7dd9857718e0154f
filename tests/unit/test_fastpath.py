"""The pandas-free fast path returns what the pyfunc returns, for every model it accepts."""

from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.mixture import BayesianGaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder
from threadpoolctl import threadpool_limits

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.errors import InvalidInputError, ModelUnavailableError
from persona.model.build import build_persona_model
from persona.model.naming import catalogue_personas
from persona.model.params import PreprocessingParams, SearchParams
from persona.model.preprocess import (
    FeaturePlan,
    build_preprocessor,
    categorical_values,
    prepare_features,
)
from persona.model.pyfunc import PersonaModel
from persona.model.search import make_estimator
from persona.serving.contract import Batch
from persona.serving.fastpath import CompiledModel, FastScores
from persona.serving.model_store import ServedModel, spec_for_model

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "00_create_data/personas.yaml")
SCHEMA = CATALOGUE.schema
K = 5

PREPROCESSING = {
    "standard": PreprocessingParams(scale="standard", numeric_impute="median"),
    "robust": PreprocessingParams(scale="robust", numeric_impute="mean"),
    "standard-numeric-only": PreprocessingParams(scale="standard", categorical_weight=0.0),
    "robust-numeric-only": PreprocessingParams(scale="robust", categorical_weight=0.0),
    # a feature plan (persona.model.preprocess): a second numeric block through log1p, and a
    # column left out; or every numeric column logged (the log block alone)
    "standard-log-and-drop": PreprocessingParams(scale="standard"),
    "robust-all-logged": PreprocessingParams(scale="robust", numeric_impute="mean"),
}
PLANS = {
    "standard-log-and-drop": FeaturePlan(
        log=("annual_income", "avg_basket_value", "recency_days"), dropped=("web_visits",)
    ),
    "robust-all-logged": FeaturePlan(log=tuple(SCHEMA.numeric)),
}


def numeric_inputs(prep: str, schema=SCHEMA) -> tuple[str, ...]:
    """The numeric columns a model reads, in its order: unlogged, then logged; none left out."""
    plan = PLANS.get(prep, FeaturePlan())
    kept = [name for name in schema.numeric if name not in plan.dropped]
    return tuple(sorted(kept, key=lambda name: name in plan.log))


FAMILIES = {
    "kmeans": ("kmeans", {"n_init": 1}),
    "minibatch_kmeans": ("minibatch_kmeans", {"n_init": 1, "batch_size": 1024}),
    **{
        f"gmm_{cov}": ("gaussian_mixture", {"covariance_type": cov, "n_init": 1, "max_iter": 30})
        for cov in ("full", "tied", "diag", "spherical")
    },
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small fits: OpenMP/BLAS threads only spin against each other on a shared machine."""
    with threadpool_limits(limits=1):
        yield


@cache
def training_frame() -> pd.DataFrame:
    # missing categoricals arrive as None, which the fitted encoder learns as a level
    return generate_snapshot(CATALOGUE, 2000, seed=11, missing_rate=0.03, progress=False)


@cache
def scoring_frame() -> pd.DataFrame:
    """Fresh customers with gaps (None and NaN), an unseen level and an all-missing row."""
    frame = generate_snapshot(CATALOGUE, 1000, seed=12, missing_rate=0.05, progress=False)
    frame.loc[::7, "channel"] = "teleport"
    frame.loc[3::11, "region"] = np.nan
    frame.loc[0, list(SCHEMA.numeric)] = np.nan
    frame.loc[0, "channel"], frame.loc[0, "region"] = np.nan, None
    frame.loc[1, "region"] = "atlantis"
    return frame


@cache
def preprocessor(name: str, reverse_numeric: bool = False):
    schema = SCHEMA
    if reverse_numeric:
        schema = replace(SCHEMA, numeric=dict(reversed(list(SCHEMA.numeric.items()))))
    features = prepare_features(training_frame(), schema)
    pre = build_preprocessor(schema, PREPROCESSING[name], PLANS.get(name)).fit(features)
    return schema, pre


@cache
def trained(prep: str, family: str, reverse_numeric: bool = False) -> tuple[PersonaModel, dict]:
    """A fitted pipeline named the way the trainer names it (build_persona_model)."""
    schema, pre = preprocessor(prep, reverse_numeric)
    kind, kwargs = FAMILIES[family]
    estimator = Pipeline([("preprocess", pre), ("cluster", make_estimator(kind, K, kwargs, 0))])
    estimator.fit(prepare_features(training_frame(), schema))
    built = build_persona_model(
        estimator, training_frame(), schema, SearchParams(), catalogue_personas(CATALOGUE)
    )
    return built.model, built.table


def arrays(compiled: CompiledModel, frame: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    numeric = frame[list(compiled.numeric)].to_numpy(dtype=np.float64)
    return numeric, [frame[name].to_numpy(dtype=object) for name in compiled.categorical]


def assert_same(scores: FastScores, expected: pd.DataFrame) -> None:
    np.testing.assert_array_equal(scores.persona_id, expected["persona_id"].to_numpy())
    np.testing.assert_array_equal(scores.persona_name, expected["persona_name"].to_numpy())
    np.testing.assert_allclose(
        scores.confidence, expected["confidence"].to_numpy(), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        scores.distance, expected["distance"].to_numpy(), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("prep", PREPROCESSING)
def test_matches_pyfunc(prep, family):
    model, _ = trained(prep, family)
    frame = scoring_frame()
    compiled = CompiledModel.from_persona_model(model)
    numeric, categorical = arrays(compiled, frame)
    before = numeric.copy()

    scores = compiled.score(numeric, categorical)

    expected = model.predict(None, frame)
    assert_same(scores, expected)
    cleaned = frame[model.features].copy()
    for name in model.categorical:
        cleaned[name] = categorical_values(cleaned[name])
    np.testing.assert_array_equal(scores.labels, model.estimator.predict(cleaned))
    np.testing.assert_array_equal(numeric, before)  # the caller's array is not imputed in place
    assert compiled.numeric == numeric_inputs(prep)
    with_categoricals = PREPROCESSING[prep].categorical_weight > 0
    assert compiled.categorical == (tuple(SCHEMA.categorical) if with_categoricals else ())


def test_from_pipeline_equals_from_persona_model():
    model, table = trained("standard", "gmm_diag")
    frame = scoring_frame()
    by_table = CompiledModel.from_pipeline(model.estimator, table)
    by_model = CompiledModel.from_persona_model(model)
    first, second = by_table.score(*arrays(by_table, frame)), by_model.score(
        *arrays(by_model, frame)
    )
    for field in ("labels", "persona_id", "persona_name", "confidence", "distance"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))


@pytest.mark.parametrize("family", ["kmeans", "gmm_full"])
def test_single_rows_match_pyfunc(family):
    model, _ = trained("standard", family)
    compiled = CompiledModel.from_persona_model(model)
    frame = scoring_frame()
    for row in (0, 1, 3, 7, 14, 100):  # all-missing, unseen region, NaN region, unseen channel
        one = frame.iloc[[row]]
        scores = compiled.score(*arrays(compiled, one))
        assert scores.labels.shape == (1,)
        assert_same(scores, model.predict(None, one))


def test_numeric_inputs_follow_the_fitted_column_order():
    model, _ = trained("standard", "kmeans", reverse_numeric=True)
    compiled = CompiledModel.from_persona_model(model)
    frame = scoring_frame()
    assert compiled.numeric == tuple(reversed(list(SCHEMA.numeric)))

    assert_same(compiled.score(*arrays(compiled, frame)), model.predict(None, frame))
    schema_order = frame[list(SCHEMA.numeric)].to_numpy(dtype=np.float64)
    wrong = compiled.score(schema_order, arrays(compiled, frame)[1])
    assert not np.allclose(wrong.distance, model.predict(None, frame)["distance"].to_numpy())


def unsupported_pipeline(case: str) -> Pipeline:
    """A fitted pipeline with one thing the fast path must refuse."""
    pre = build_preprocessor(SCHEMA, PREPROCESSING["standard"])
    cluster = make_estimator("kmeans", K, {"n_init": 1}, 0)
    if case == "scaler":
        impute = pre.transformers[0][1].steps[0]
        pre.set_params(numeric=Pipeline([impute, ("scale", MinMaxScaler())]))
    elif case == "encoder-drop":
        impute = pre.transformers[1][1].steps[0]
        encoder = OneHotEncoder(drop="first", handle_unknown="ignore", sparse_output=False)
        pre.set_params(categorical=Pipeline([impute, ("one_hot", encoder)]))
    elif case == "function":
        impute, scale = pre.transformers[0][1].steps
        root = FunctionTransformer(np.sqrt, feature_names_out="one-to-one")
        pre.set_params(numeric=Pipeline([impute, ("sqrt", root), scale]))
    elif case == "cluster-model":
        cluster = BayesianGaussianMixture(n_components=K, max_iter=5, random_state=0)
    steps = [("preprocess", pre), ("cluster", cluster)]
    if case == "extra-step":
        steps.insert(1, ("pca", PCA(3)))
    return Pipeline(steps).fit(prepare_features(training_frame(), SCHEMA))


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("scaler", "MinMaxScaler"),
        ("encoder-drop", "OneHotEncoder with drop"),
        ("function", "FunctionTransformer"),
        ("cluster-model", "BayesianGaussianMixture"),
        ("extra-step", "need preprocess \\+ cluster"),
    ],
)
def test_unsupported_pipelines_raise_model_unavailable(case, named):
    _, table = trained("standard", "kmeans")
    with pytest.raises(ModelUnavailableError, match=named):
        CompiledModel.from_pipeline(unsupported_pipeline(case), table)


def test_persona_table_with_a_gap_is_rejected():
    model, table = trained("standard", "kmeans")
    clusters = dict(table["clusters"])
    del clusters["1"]
    with pytest.raises(ModelUnavailableError, match="persona table"):
        CompiledModel.from_pipeline(model.estimator, {**table, "clusters": clusters})


def test_malformed_input_is_invalid_input():
    model, _ = trained("standard", "kmeans")
    compiled = CompiledModel.from_persona_model(model)
    numeric, categorical = arrays(compiled, scoring_frame().head(4))
    infinite = numeric.copy()
    infinite[2, 1] = np.inf
    cases = [
        (numeric[:, :-1], categorical),
        (numeric[0], categorical),
        (infinite, categorical),
        (numeric, categorical[:1]),
        (numeric, [categorical[0], categorical[1][:3]]),
    ]
    for bad_numeric, bad_categorical in cases:
        with pytest.raises(InvalidInputError):
            compiled.score(bad_numeric, bad_categorical)


@pytest.mark.parametrize(
    ("prep", "reverse"),
    [("standard-numeric-only", False), ("standard", True), ("standard-log-and-drop", False)],
)
def test_served_model_feeds_the_fast_path_from_a_request_batch(prep, reverse):
    """A request carries every feature in the model's order; numeric-only models, another
    column order or a column the model leaves out must still score exactly like the pyfunc,
    on both scoring paths."""
    model, _ = trained(prep, "kmeans", reverse_numeric=reverse)
    spec = spec_for_model(SCHEMA, 5000)(model)
    frame = scoring_frame()
    batch = Batch(
        ids=None,
        numeric=frame[list(spec.numeric)].to_numpy(dtype=np.float64),
        categorical=[frame[name].to_numpy(dtype=object) for name in spec.categorical],
        n_rows=len(frame),
    )
    expected = model.predict(None, frame)
    common = dict(name="m", version="1", run_id="r", alias="production", promoted_at=None)
    for compiled in (CompiledModel.from_persona_model(model), None):
        served = ServedModel(model=model, compiled=compiled, spec=spec, **common)
        persona_id, persona_name, confidence, distance = served.score(batch)
        np.testing.assert_array_equal(persona_id, expected["persona_id"].to_numpy())
        np.testing.assert_array_equal(persona_name, expected["persona_name"].to_numpy())
        np.testing.assert_allclose(confidence, expected["confidence"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(distance, expected["distance"], rtol=1e-9, atol=1e-12)


def hostile_frame(seed: int) -> pd.DataFrame:
    """Random customers far outside the schema's ranges, and values that overflow or underflow
    the squared distances (the API refuses infinity before scoring, so none here)."""
    rng = np.random.default_rng(seed)
    n = 600
    frame = scoring_frame().head(n).reset_index(drop=True).copy()
    exponents = rng.uniform(-300, 300, size=(n, len(SCHEMA.numeric)))
    magnitudes = np.where(rng.random((n, len(SCHEMA.numeric))) < 0.5, 10.0**exponents, 0.0)
    plausible = rng.normal(0, 1, size=magnitudes.shape) * 10.0 ** rng.integers(0, 7, n)[:, None]
    values = np.where(rng.random(magnitudes.shape) < 0.3, magnitudes, plausible)
    values *= rng.choice([-1.0, 1.0], size=values.shape)
    values[rng.random(values.shape) < 0.05] = np.nan
    extremes = [1e200, -1e200, 1e155, 1e154, 1.7e308, -1.7e308, 5e-324, -0.0, 1e-300]
    values[: len(extremes), 1] = extremes  # annual_income, the widest column
    values[len(extremes) : 2 * len(extremes), :] = np.array(extremes)[:, None]
    frame[list(SCHEMA.numeric)] = values
    for name, levels in SCHEMA.categorical.items():
        choices = np.array([*levels, "unseen", None, np.nan], dtype=object)
        frame[name] = choices[rng.integers(0, len(choices), n)]
    return frame


@pytest.mark.parametrize(
    ("prep", "family"),
    [*(("standard", family) for family in FAMILIES), ("standard-log-and-drop", "kmeans")],
)
def test_both_paths_agree_on_random_and_hostile_values(prep, family):
    """The pyfunc and the fast path share the assignment maths (persona.model.scoring); what
    they compute apart (the feature space) must agree too, overflow included: a row is
    unscorable (non-finite confidence or distance) on both paths or on neither. Through log1p,
    an amount below -1 (outside the schema) is NaN on both paths."""
    model, _ = trained(prep, family)
    compiled = CompiledModel.from_persona_model(model)
    for seed in (1, 2):
        frame = hostile_frame(seed)
        with np.errstate(all="ignore"):
            fast = compiled.score(*arrays(compiled, frame))
            slow = model.predict(None, frame)
        finite = np.isfinite(fast.confidence) & np.isfinite(fast.distance)
        expected_finite = np.isfinite(slow["confidence"]) & np.isfinite(slow["distance"])
        np.testing.assert_array_equal(finite, expected_finite.to_numpy())
        assert 0 < finite.sum() < len(frame)  # both kinds of rows were exercised
        assert_same(
            FastScores(*(getattr(fast, f)[finite] for f in FastScores.__dataclass_fields__)),
            slow[finite],
        )


@pytest.mark.parametrize(("prep", "family"), [("standard", "kmeans"), ("robust", "gmm_full")])
def test_text_read_with_its_levels_scores_as_per_row_text(prep, family):
    """A column given with its Levels (an Arrow body) is looked up once per distinct value:
    the same scores as the per-row lookup of the same texts, None, unseen levels and a None
    held in the levels themselves (an Arrow dictionary may hold one) included."""
    import pyarrow as pa

    from persona.serving.record_batches import _levels

    model, _ = trained(prep, family)
    compiled = CompiledModel.from_persona_model(model)
    numeric, categorical = arrays(compiled, scoring_frame())
    levels = [_levels(pa.array(values, pa.string(), from_pandas=True)) for values in categorical]
    texts = [found.per_row(found.values, None) for found in levels]
    assert any(None in t.tolist() for t in texts) and "teleport" in texts[0].tolist()
    expected = compiled.score(numeric, texts)
    for scores in (
        compiled.score(numeric, texts, levels),
        compiled.score(numeric, texts, [_with_a_null_level(found) for found in levels]),
    ):
        np.testing.assert_array_equal(scores.labels, expected.labels)
        np.testing.assert_array_equal(scores.confidence, expected.confidence)


def _with_a_null_level(levels):
    """The same column with None among its values (its rows now point there)."""
    from persona.serving.contract import Levels

    values = np.append(levels.values, np.array([None], dtype=object))
    return Levels(values, levels.codes)  # the missing rows' position now holds the None
