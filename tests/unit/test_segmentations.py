"""Segmentations side by side: names, the stored definitions and what each one owns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from persona.adapters import database
from persona.cli import main
from persona.composition import for_segmentation
from persona.errors import ConfigurationError
from persona.segmentation import check_name, checked_definition, suffixed
from persona.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"schema": "s.yaml", "params": "p.yaml", "drift": "d.yaml"}
MARKETING = {
    "id_column": "ID",
    "numeric_features": {"Income": {"min": 0}, "MntWines": {"min": 0}},
    "categorical_features": {"Education": None},
    "min_rows": 5,
}


@pytest.fixture
def stack(tmp_path, monkeypatch):
    """A stack of SQLite files under tmp_path, and no MLflow answering."""
    monkeypatch.setenv("PERSONA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERSONA_DATABASE_URL", f"sqlite:///{tmp_path / 'persona.db'}")
    monkeypatch.setenv("PERSONA_ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.chdir(ROOT)
    schema = tmp_path / "marketing.yaml"
    schema.write_text(yaml.safe_dump(MARKETING))
    return tmp_path, schema


def run(capsys, *argv: str) -> tuple[int, object, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.strip() else None, out.err


@pytest.mark.parametrize("name", ["", "Marketing", "1st", "a-b", "x" * 41, "a b"])
def test_a_name_must_fit_table_and_model_names(name):
    with pytest.raises(ConfigurationError, match="segmentation name"):
        check_name(name)


def test_the_default_segmentation_keeps_every_name():
    assert suffixed("customers", "default") == "customers"
    assert suffixed("customers", "mall") == "customers_mall"
    assert suffixed("persona-segmentation", "mall", "-") == "persona-segmentation-mall"


def test_a_definition_is_checked_like_training_checks_it():
    params, drift = (ROOT / "01_model/params.yaml").read_text(), ""
    with pytest.raises(ConfigurationError, match="s.yaml: 'numeric_features'"):
        checked_definition("mall", "id_column: ID\n", params, drift, SOURCES)
    with pytest.raises(ConfigurationError, match="p.yaml: candidates"):
        checked_definition("mall", yaml.safe_dump(MARKETING), "candidates: {}\n", drift, SOURCES)
    with pytest.raises(ConfigurationError, match="the stack's own"):
        checked_definition("default", yaml.safe_dump(MARKETING), params, drift, SOURCES)
    assert checked_definition("mall", yaml.safe_dump(MARKETING), params, drift, SOURCES).name


def test_add_list_and_ingest_keep_segmentations_apart(stack, capsys):
    tmp_path, schema = stack
    code, added, _ = run(capsys, "segmentation", "add", "mall", "--schema", str(schema))
    assert code == 0
    assert added["customers_table"] == "customers_mall"
    assert added["model_name"] == "persona-segmentation-mall"

    code, _, err = run(capsys, "segmentation", "add", "mall", "--schema", str(schema))
    assert code == 2 and "exists already" in err and "--replace" in err
    code, _, _ = run(capsys, "segmentation", "add", "mall", "--schema", str(schema), "--replace")
    assert code == 0

    code, listed, _ = run(capsys, "segmentation", "list")
    assert code == 0 and [s["name"] for s in listed] == ["default", "mall"]
    assert listed[0]["customers_table"] == "customers"
    assert str(listed[1]["production"]).startswith("unknown")  # MLflow does not answer

    rows = "ID,Income,MntWines,Education\n" + "".join(
        f"C{i},{30000 + i * 100},{i * 3},{'PhD' if i % 2 else 'Basic'}\n" for i in range(20)
    )
    (tmp_path / "mall.csv").write_text(rows)
    code, ingested, _ = run(
        capsys,
        "data",
        "ingest",
        "--segmentation",
        "mall",
        "--file",
        str(tmp_path / "mall.csv"),
        "--month",
        "2026-11",
    )
    assert code == 0 and ingested["table"] == "customers_mall" and ingested["rows"] == 20
    engine = database.make_engine(f"sqlite:///{tmp_path / 'persona.db'}")
    assert database.count_rows(engine, "customers_mall") == 20
    assert not sa.inspect(engine).has_table("customers")  # the default one is untouched


def test_settings_of_a_segmentation_are_its_own_and_applying_twice_changes_nothing(stack, capsys):
    tmp_path, schema = stack
    assert run(capsys, "segmentation", "add", "mall", "--schema", str(schema))[0] == 0
    base = load_settings()
    mall = for_segmentation(base, "mall")
    assert for_segmentation(mall) == mall
    assert (mall.scores_table, mall.scoring_log_table) == (
        "customer_personas_mall",
        "scoring_log_mall",
    )
    assert mall.mlflow_experiment == "persona-segmentation-mall"
    assert mall.evidently_project == "persona-drift-mall"
    assert yaml.safe_load(mall.schema_path.read_text()) == MARKETING
    assert not mall.catalogue_path.exists()  # named from its own profiles, not the synthetic ones
    assert for_segmentation(base, "default") == base
    with pytest.raises(ConfigurationError, match="no segmentation 'shop'; known: default, mall"):
        for_segmentation(base, "shop")


def test_unknown_segmentation_is_one_error_line(stack, capsys):
    code, _, err = run(capsys, "model", "show", "--segmentation", "shop")
    assert code == 2 and "no segmentation 'shop'" in err and "Traceback" not in err
    code, _, err = run(capsys, "segmentation", "remove", "default")
    assert code == 2 and "stays" in err


def test_a_command_on_the_default_segmentation_does_not_import_the_composition_root(stack):
    """`persona pipeline run` (one per Mage run) starts in well under a second: the default
    segmentation needs no composition root, whose imports (MLflow, the model code) take seconds."""
    code = (
        "import sys; from persona.cli import main; main(['pipeline', 'run', 'trian']); "
        "print('composition imported:', 'persona.composition' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=os.environ, capture_output=True, text=True, check=False
    )
    assert "no Mage pipeline 'trian'" in done.stderr
    assert done.stdout.splitlines()[-1] == "composition imported: False"


def test_a_mage_run_variable_picks_the_segmentation(stack, capsys):
    """What the train and monitor blocks do with their `segmentation` variable (the Mage UI,
    API triggers and `make train SEGMENTATION=...` set it)."""
    from persona.orchestration import blocks

    _, schema = stack
    assert run(capsys, "segmentation", "add", "mall", "--schema", str(schema))[0] == 0
    assert blocks._settings({"segmentation": "mall"}).customers_table == "customers_mall"
    assert blocks._settings({"segmentation": ""}).customers_table == "customers"
    context = blocks._context({"segmentation": "mall", "seed": "3"})
    assert context.schema.id_column == "ID" and context.catalogue is None
    assert context.registry.model_name == "persona-segmentation-mall"


def test_a_bad_derived_expression_is_refused_when_the_segmentation_is_added(stack, capsys, caplog):
    tmp_path, _ = stack
    schema = tmp_path / "bad.yaml"
    schema.write_text(yaml.safe_dump({**MARKETING, "derived": {"total_spend": "MntWine + 1"}}))
    code, _, _ = run(capsys, "segmentation", "add", "shop", "--schema", str(schema))
    assert code == 2
    assert "unknown column 'MntWine'" in caplog.text and "MntWines" in caplog.text
    assert "total_spend" in caplog.text
    code, listed, _ = run(capsys, "segmentation", "list")
    assert [s["name"] for s in listed] == ["default"]  # nothing was stored
