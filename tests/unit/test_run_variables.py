"""Each run variable's default is defined once (persona.run_variables); everything else agrees.

The Mage pipelines' metadata.yaml, the Makefile, the CLI, the flows' request classes and the
pipeline README repeat or read those defaults; these checks fail with what to change, so a
default edited in one place cannot drift from the others.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from persona import run_variables
from persona.cli import build_parser
from persona.run_variables import (
    DEFAULT_MONTH,
    DEMO,
    MONITOR,
    PIPELINES,
    TRAIN,
    RunVariable,
    defaults,
)

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_DIR = ROOT / "02_pipeline/persona_pipelines/pipelines"
MAKEFILE = ROOT / "Makefile"
PIPELINE_README = ROOT / "02_pipeline/README.md"

# Make variables that stand for a run variable and keep a default in the Makefile: the month
# the stack targets act on. Every other run variable's name must have no default there.
MAKE_DEFAULTS = {"MONTH": DEFAULT_MONTH, "MONTHS": DEFAULT_MONTH}
NOT_MAKE_VARIABLES = {"PATH"}  # the shell's PATH, not the `path` run variable
ASSIGNMENT = re.compile(
    r"^(?:[^\s:#=]+(?:[ \t]+[^\s:#=]+)*[ \t]*:[ \t]*)?"  # optional target-specific prefix
    r"(?:(?:export|override)[ \t]+)*"
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)[ \t]*(?:\?=|::=|:=|\+=|=)[ \t]*(?P<value>.*)$",
    flags=re.MULTILINE,
)


def _same(value, expected) -> bool:
    """Equal and of the same kind: YAML's true is not 1, nor is 1 true (as Python has it)."""
    if isinstance(expected, bool) or isinstance(value, bool):
        return type(value) is type(expected) and value == expected
    return value == expected and isinstance(value, str) == isinstance(expected, str)


def _yaml_block(values: dict) -> str:
    return yaml.safe_dump({"variables": values}, sort_keys=False, default_flow_style=False)


def test_tables_are_well_formed():
    for table in (TRAIN, MONITOR, DEMO):
        for name, variable in table.items():
            assert name == variable.name
            assert variable.kind in (str, int, float, bool), name
            assert variable.help, name
            if variable.default != "":
                kind = (int, float) if variable.kind is float else variable.kind
                assert isinstance(variable.default, kind), name
            if variable.choices:
                assert variable.default in variable.choices, name


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_pipeline_metadata_variables_are_the_definition(pipeline):
    path = PIPELINE_DIR / pipeline / "metadata.yaml"
    found = yaml.safe_load(path.read_text()).get("variables") or {}
    expected = defaults(PIPELINES[pipeline])
    fix = (
        f"{path.relative_to(ROOT)} `variables:` must equal persona.run_variables."
        f"{pipeline.upper()} (names, order, values). Replace its block with:\n"
        f"{_yaml_block(expected)}(or change run_variables.py if the YAML holds the new default)"
    )
    assert list(found) == list(expected), fix
    wrong = [name for name in expected if not _same(found[name], expected[name])]
    assert not wrong, f"{', '.join(wrong)} differ. {fix}"


def _make_assignments() -> list[tuple[str, str, int]]:
    text = MAKEFILE.read_text()
    # Only make's own lines: recipes (tab-indented) and the dotenv awk program are not.
    text = re.sub(r"^define .*?^endef$", "", text, flags=re.MULTILINE | re.DOTALL)
    return [
        (m["name"], m["value"].strip(), text.count("\n", 0, m.start()) + 1)
        for m in ASSIGNMENT.finditer(text)
    ]


def test_makefile_month_defaults_are_the_definition():
    assignments = _make_assignments()
    for name, expected in MAKE_DEFAULTS.items():
        values = [value for found, value, _ in assignments if found == name]
        assert values, f"Makefile: `{name} ?= {expected}` is missing"
        assert set(values) == {expected}, (
            f"Makefile sets {name} to {values}, but persona.run_variables.DEFAULT_MONTH is "
            f"{expected!r}: make them agree (change DEFAULT_MONTH, and the Makefile with it)"
        )


def test_makefile_repeats_no_other_run_variable_default():
    names = {
        variable.name.upper() for table in (TRAIN, MONITOR, DEMO) for variable in table.values()
    }
    names -= set(MAKE_DEFAULTS) | NOT_MAKE_VARIABLES
    repeated = [
        f"line {line}: {name} = {value}"
        for name, value, line in _make_assignments()
        if name in names
    ]
    assert not repeated, (
        "the Makefile gives a run variable a default of its own ("
        + "; ".join(repeated)
        + "). Remove it and pass the option only when the variable is set, e.g. "
        "`$(if $(ROWS),--rows $(ROWS))`: the persona command's default "
        "(persona.run_variables) then applies"
    )


def test_the_makefile_assignment_pattern_sees_target_specific_defaults():
    found = ASSIGNMENT.findall("demo: ROWS = 10000\nexport SEED ?= 42\n\t$(DEV)/x --rows 1\n")
    assert found == [("ROWS", "10000"), ("SEED", "42")]


def _cli_defaults(*argv: str) -> dict:
    return vars(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "table", "skipped"),
    [
        (("train",), TRAIN, {"register"}),  # always registers: no conditional to gate it
        (("monitor",), MONITOR, set()),
        (("demo",), DEMO, set()),
    ],
)
def test_cli_options_take_their_defaults_and_help_from_the_definition(argv, table, skipped):
    parsed = _cli_defaults(*argv)
    for name, variable in table.items():
        if name in skipped:
            assert name not in parsed
            continue
        assert _same(parsed[name], variable.default), (name, parsed[name])
    help_text = re.sub(r"\s+", " ", _subparser(argv[0]).format_help())
    for name, variable in table.items():
        if name not in skipped:
            assert variable.option in help_text and variable.help in help_text, name


def _subparser(command: str):
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return commands.choices[command]


def test_cli_data_generate_makes_what_train_makes_by_default():
    parsed = _cli_defaults("data", "generate")
    assert parsed["month"] == [DEFAULT_MONTH]
    for name in ("rows", "seed", "scenario"):
        assert parsed[name] == TRAIN[name].default


def test_cli_choices_are_the_definition():
    assert _cli_defaults("monitor", "--source", "scoring_log")["source"] == "scoring_log"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--source", "scoring_log"])


def test_flow_requests_default_to_the_definition():
    from persona.flows.demo import DemoRequest
    from persona.flows.monitor import MonitorRequest
    from persona.flows.train import DataRequest

    for request in (DataRequest(), DataRequest.from_variables({})):
        for name in ("source", "rows", "seed", "scenario"):
            assert getattr(request, name) == TRAIN[name].default, name
    monitor = MonitorRequest.from_variables({"month": "2026-02"})
    for name in ("source", "rows", "seed", "scenario"):
        assert getattr(monitor.data, name) == MONITOR[name].default, name
    assert monitor.retrain is MONITOR["retrain"].default
    assert monitor.days == MONITOR["days"].default and monitor.all_clear_alert is None
    tour = DemoRequest(("2026-01", "2026-02", "2026-03"))
    assert (tour.rows, tour.sample_rows, tour.seed, tour.scenario) == tuple(
        DEMO[name].default for name in ("rows", "sample", "seed", "scenario")
    )


def test_block_register_flag_defaults_to_the_definition():
    from persona.orchestration.blocks import registration_enabled

    assert registration_enabled({}) is TRAIN["register"].default


def _doc_text(variable: RunVariable) -> str:
    value = variable.default
    return str(value).lower() if isinstance(value, bool) else str(value)


def _readme_tables() -> dict[str, dict[str, str]]:
    """pipeline -> {variable: the default its README table shows}."""
    text = PIPELINE_README.read_text()
    shown: dict[str, dict[str, str]] = {}
    for pipeline in PIPELINES:
        section = text.split(f"## Pipeline `{pipeline}`", 1)[1].split("\n## ", 1)[0]
        rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `")]
        table: dict[str, str] = {}
        for names, values in rows:
            cells = [v.strip().strip("`") for v in values.split(",")]
            for index, name in enumerate(re.findall(r"`(\w+)`", names)):
                table.setdefault(name, cells[index] if index < len(cells) else "")
        shown[pipeline] = table
    return shown


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_pipeline_readme_shows_the_defaults(pipeline):
    shown = _readme_tables()[pipeline]
    missing = [name for name in PIPELINES[pipeline] if name not in shown]
    assert not missing, f"02_pipeline/README.md, pipeline {pipeline}: add rows for {missing}"
    wrong = {
        name: (shown[name], _doc_text(variable))
        for name, variable in PIPELINES[pipeline].items()
        if variable.default != "" and shown[name] != _doc_text(variable)
    }
    assert not wrong, (
        f"02_pipeline/README.md, pipeline {pipeline}: defaults (shown, defined) differ: {wrong}; "
        "persona.run_variables is the definition"
    )


def test_module_is_pure():
    """The CLI builds its parser from it: no third-party import on the way."""
    source = Path(run_variables.__file__).read_text()
    imports = re.findall(r"^(?:from|import) ([\w.]+)", source, flags=re.MULTILINE)
    assert set(imports) <= {"__future__", "dataclasses", "typing"}, imports
