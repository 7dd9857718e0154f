"""The docs promise only what exists: make targets that run, links that resolve, settings that match.

A newcomer copies commands from the README; a target that was renamed, a link to a moved file
or a settings table that lags the registry costs them an afternoon. These checks read the docs
the way a reader does and fail with the fix.
"""

from __future__ import annotations

import os
import re
import subprocess
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from persona.settings import (
    CONFIG_REFERENCE_END,
    CONFIG_REFERENCE_START,
    VARIABLES,
    config_reference_markdown,
)
from persona_tools.devtools import config_reference_block, with_config_reference

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
STAGE_READMES = sorted(ROOT.glob("0*/README.md"))
# Every document a reader is pointed to: the README, each stage's (and sub-folders') README,
# and EVALUATION.md.
DOCS = [README, *sorted(ROOT.glob("0*/**/README.md")), ROOT / "EVALUATION.md"]
REGENERATE = ".venv/dev/bin/python -m persona_tools.devtools config-reference --write README.md"

FENCE = re.compile(r"^```.*?$(.*?)^```", flags=re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# `make TARGET` as a command: at the start, or after a shell separator or an assignment.
MAKE_CALL = re.compile(r"(?:^|[\s;&|(])make\s+([a-z][a-z0-9_-]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", flags=re.MULTILINE)


def _code_snippets(text: str) -> list[str]:
    """Code the reader may run: fenced blocks (comments dropped) and inline code spans."""
    snippets = []
    for block in FENCE.findall(text):
        snippets += [line.split(" #", 1)[0] for line in block.splitlines()]
    snippets += INLINE_CODE.findall(FENCE.sub("", text))
    return snippets


def named_targets(doc: Path) -> set[str]:
    return {
        target
        for snippet in _code_snippets(doc.read_text())
        for target in MAKE_CALL.findall(snippet)
    }


def _documented() -> dict[str, list[str]]:
    """target -> the documents that name it."""
    where: dict[str, list[str]] = {}
    for doc in DOCS:
        for target in named_targets(doc):
            where.setdefault(target, []).append(doc.relative_to(ROOT).as_posix())
    return dict(sorted(where.items()))


@cache
def _makefile_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([a-zA-Z][a-zA-Z0-9_-]*)\s*:(?!=)", text, flags=re.MULTILINE))


def _minimal_env() -> dict[str, str]:
    """What a fresh shell has; no MAKEFLAGS from a calling make, no user configuration."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    fresh = {name: os.environ[name] for name in keep if name in os.environ}
    return {**fresh, "PERSONA_ENV_FILE": os.devnull}  # a user's .env stays out of the tests


def test_the_docs_name_make_targets():
    assert {"up", "demo", "test", "local-up", "train", "monitor"} <= set(_documented())


@pytest.mark.parametrize(("target", "docs"), list(_documented().items()), ids=list(_documented()))
def test_every_make_target_the_docs_name_exists_and_dry_runs(target, docs):
    assert (
        target in _makefile_targets()
    ), f"`make {target}` (named in {docs}) is not in the Makefile"
    # -n prints the recipes without running them (only $(shell) and $(MAKE) lines run), so a
    # target whose prerequisites, variables or includes are broken fails here in milliseconds.
    done = subprocess.run(
        ["make", "-n", target],
        cwd=ROOT,
        env=_minimal_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"`make -n {target}` (named in {docs}) failed:\n{done.stderr}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFKC", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {_slug(heading) for heading in HEADING.findall(FENCE.sub("", doc.read_text()))}


def _links(doc: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", doc.read_text()))


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(doc):
    broken = []
    for target in _links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{doc.relative_to(ROOT)}: {broken}"


def test_readme_links_every_stage_readme():
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in _links(README)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)
    }
    missing = [p.relative_to(ROOT).as_posix() for p in STAGE_READMES if p not in linked]
    assert len(STAGE_READMES) == 6
    assert not missing, f"README.md does not link {missing}"


def test_readme_configuration_table_is_generated_from_the_settings_registry():
    committed = config_reference_block(README.read_text())
    assert committed == config_reference_markdown(), (
        "README.md's configuration table differs from persona.settings.VARIABLES; "
        f"regenerate it with `{REGENERATE}`"
    )


def test_every_variable_compose_reads_is_documented():
    """Compose's own knobs are outside the settings registry, so the README must name them."""
    compose = (ROOT / "docker-compose.yml").read_text()
    read = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose))
    registered = {var.env for var in VARIABLES.values()}
    readme = README.read_text()
    undocumented = sorted(name for name in read - registered if f"`{name}`" not in readme)
    assert not undocumented, f"docker-compose.yml reads {undocumented}; describe them in README.md"


def test_writing_the_configuration_table_replaces_only_the_marked_block():
    text = f"intro\n{CONFIG_REFERENCE_START}\nstale\n{CONFIG_REFERENCE_END}\noutro\n"
    written = with_config_reference(text)
    assert written.startswith("intro\n") and written.endswith(f"{CONFIG_REFERENCE_END}\noutro\n")
    assert config_reference_block(written) == config_reference_markdown()
    assert with_config_reference(written) == written
    with pytest.raises(ValueError, match="config-reference:start"):
        with_config_reference("a README without the markers")


def test_without_postgresql_the_stack_targets_fall_back_to_sqlite():
    """LOCAL_DB=sqlite (also chosen when no PostgreSQL is found) must not export the PG URLs."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_", "MLFLOW_", "MAGE_"))
    }
    env["PERSONA_ENV_FILE"] = os.devnull  # a user's .env stays out of the test
    probe = (
        '--eval=probe-db: ; @echo "[$$PERSONA_DATABASE_URL][$$MLFLOW_BACKEND_STORE_URI]'
        '[$$MAGE_DATABASE_CONNECTION_URL]"'
    )
    outputs = {}
    for local_db in ("sqlite", "postgres"):
        done = subprocess.run(
            ["make", "-s", "--no-print-directory", probe, "STACK_TARGETS=probe-db", "probe-db",
             f"LOCAL_DB={local_db}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outputs[local_db] = done.stdout.strip()
    assert outputs["sqlite"] == "[][][]"
    assert outputs["postgres"].count("postgresql+psycopg2://postgres@127.0.0.1:5432/") == 3
