"""The model store over a model source: in memory here, MLflow's registry behind the same port."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import requests
from memory_source import CATALOGUE, MemorySource, tiny_model
from mlflow.exceptions import MlflowException, RestException

from persona.adapters.mlflow_serving import RegistryModelSource
from persona.errors import ModelUnavailableError, UpstreamUnavailableError
from persona.serving.model_store import ModelStore, follow_alias, spec_for_model

ALIAS = "production"


def store_over(source: MemorySource) -> ModelStore:
    resolver = follow_alias(source, ALIAS, spec_for_model(CATALOGUE.schema, 100))
    return ModelStore(resolver, poll_seconds=3600)


def test_serves_the_version_holding_the_alias_compiled_and_described():
    source = MemorySource()
    source.add(
        tiny_model(),
        ALIAS,
        run_id="run-1",
        run_metrics={"winner_silhouette": 0.4, "n_rows": 300.0},
        promoted_at="2026-01-01T00:00:00+00:00",
        promoted_by="persona",
    )
    store = store_over(source)
    assert store.refresh()
    served = store.current
    assert (served.name, served.version, served.alias, served.run_id) == (
        "persona-test",
        "1",
        ALIAS,
        "run-1",
    )
    assert served.compiled is not None  # the fast path
    assert served.training_metrics == {"silhouette": 0.4}
    assert served.describe()["promoted_by"] == "persona"
    assert served.spec.numeric == tuple(CATALOGUE.schema.numeric)


def test_loads_a_version_once_and_swaps_when_the_alias_moves():
    source = MemorySource()
    source.add(tiny_model(), ALIAS)
    store = store_over(source)
    assert store.refresh() and store.refresh()
    assert source.loaded == ["1"]
    source.aliases[ALIAS] = source.add(tiny_model(k=4))
    assert store.refresh() and store.current.version == "2"
    assert source.loaded == ["1", "2"]


def test_no_version_yet_names_the_model_and_the_alias():
    store = store_over(MemorySource())
    assert not store.refresh()
    assert isinstance(store.last_error, str)
    assert store.last_error.startswith("no version of persona-test holds @production yet")


def test_an_outage_keeps_the_model_and_a_missing_version_is_refused():
    source = MemorySource()
    source.add(tiny_model(), ALIAS)
    store = store_over(source)
    assert store.refresh()
    source.up = False
    assert not store.refresh() and store.current.version == "1"
    assert "did not answer" in store.last_error
    source.up = True
    assert not store.refresh("7")  # a version a peer named that the registry does not have
    assert store.current.version == "1" and "no version '7'" in store.last_error


def test_a_version_asked_for_is_loaded_whatever_the_alias_holds():
    source = MemorySource()
    source.add(tiny_model(), ALIAS)
    source.add(tiny_model(k=4))
    store = store_over(source)
    assert store.refresh("2") and store.current.version == "2"
    assert store.current.compiled is not None


class FakeClient:
    """What RegistryModelSource asks of MlflowClient, failing as told."""

    def __init__(self, failure: Exception | None = None, version: str = "3") -> None:
        self.failure, self.version = failure, version

    def get_model_version_by_alias(self, name, alias):
        if self.failure is not None:
            raise self.failure
        return SimpleNamespace(version=self.version, run_id="r")

    get_model_version = get_model_version_by_alias


def registry(failure: Exception | None = None) -> RegistryModelSource:
    return RegistryModelSource("http://registry:5000", "m", client=FakeClient(failure))


def test_registry_source_says_which_version_holds_the_alias():
    assert registry().version_holding(ALIAS) == "3"
    missing = MlflowException("Registered model alias production not found.")
    assert registry(missing).version_holding(ALIAS) is None
    by_code = RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no model m"})
    assert registry(by_code).version_holding(ALIAS) is None


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (MlflowException("API request to /api/2.0 failed"), "MLflow at http://registry:5000: API"),
        (requests.ConnectionError("refused"), "did not answer (ConnectionError)"),
        (  # the client giving up: one line, not MLflow's dump of urllib3's retries
            MlflowException(
                "API request to http://registry:5000/api/2.0/mlflow/registered-models/alias "
                "failed with exception HTTPConnectionPool(host='registry', port=5000): Max "
                "retries exceeded with url: /api (Caused by NewConnectionError('refused'))"
            ),
            "^MLflow at http://registry:5000 did not answer (NewConnectionError)$",
        ),
    ],
)
def test_registry_source_failures_are_upstream_errors(failure, said):
    with pytest.raises(
        UpstreamUnavailableError, match=said.replace("(", r"\(").replace(")", r"\)")
    ):
        registry(failure).version_holding(ALIAS)
    with pytest.raises(UpstreamUnavailableError):
        registry(failure).load("3", ALIAS)


def test_registry_source_refuses_a_version_it_does_not_have():
    missing = MlflowException("Model Version (name=m, version=9) not found")
    with pytest.raises(ModelUnavailableError, match="m has no version '9'"):
        registry(missing).load("9", ALIAS)
