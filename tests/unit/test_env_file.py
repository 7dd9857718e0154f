"""Configuration precedence as in Docker Compose, for `make` and for persona.settings alike.

command line / run variable > shell environment > .env > default, and an empty value in .env
means the default. `make` used to `include .env`, so `TELEGRAM_BOT_TOKEN=abc make monitor`
silently took the empty value from .env instead of the shell's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from persona.settings import VARIABLES, load_settings, read_env_file

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = VARIABLES["env_file"].env
DEV_PYTHON = ROOT / ".venv/dev/bin/python"

DOTENV = """\
# a comment, then a blank line

TELEGRAM_CHAT_ID=from-file
PERSONA_MODEL_NAME="two words # not a comment"   # a comment
PERSONA_MODEL_ALIAS=plain # a comment
export GCS_PREFIX=exported
PERSONA_HOME=
PERSONA_SCHEMA=first
PERSONA_SCHEMA=last
TELEGRAM_BASE_URL='http://127.0.0.1:1/$literal'
PERSONA_ENV_FILE=only-the-environment-names-the-file
"""


@pytest.fixture
def dotenv(tmp_path) -> Path:
    path = tmp_path / "persona.env"
    path.write_text(DOTENV)
    return path


def test_tests_never_read_a_dotenv_file(tmp_path, monkeypatch):
    """conftest points the env file at an empty one, so a .env in the working dir is ignored."""
    assert os.environ[ENV_FILE] == os.devnull
    (tmp_path / ".env").write_text("PERSONA_MODEL_NAME=from-a-users-env\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().model_name == "persona-segmentation"


def test_dotenv_in_the_working_directory_fills_what_the_environment_does_not_set(
    tmp_path, monkeypatch
):
    monkeypatch.delenv(ENV_FILE)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "PERSONA_MODEL_NAME=from-file\nTELEGRAM_CHAT_ID=from-file\nPERSONA_MODEL_ALIAS=\n"  # pragma: allowlist secret
    )
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "from-env")
    settings = load_settings()
    assert settings.model_name == "from-file"  # .env > default
    assert settings.telegram_chat_id == "from-env"  # environment > .env
    assert settings.model_alias == "production"  # empty in .env = the default
    assert settings.mlflow_port == 5000  # in neither: the default
    assert settings.env_file == tmp_path / ".env"
    overridden = load_settings(overrides={"model_name": "from-run", "telegram_chat_id": "run"})
    assert (overridden.model_name, overridden.telegram_chat_id) == ("from-run", "run")


def test_env_file_variable_names_the_file_and_compose_parsing_applies(dotenv, monkeypatch):
    monkeypatch.setenv(ENV_FILE, str(dotenv))
    settings = load_settings()
    assert settings.telegram_chat_id == "from-file"
    assert settings.model_name == "two words # not a comment"  # quoted: '#' is kept
    assert settings.model_alias == "plain"  # unquoted: ' # ...' is a comment
    assert settings.gcs_prefix == "exported"
    assert settings.schema_path == Path("last").resolve()  # the last duplicate wins
    assert settings.telegram_base_url == "http://127.0.0.1:1/$literal"  # no interpolation
    assert settings.home == Path(".persona").resolve()  # empty = the default
    assert settings.env_file == dotenv  # a PERSONA_ENV_FILE line in the file is ignored


def test_an_empty_environment_variable_still_hides_the_file(dotenv, monkeypatch):
    """As in Compose and `make` (`?=`): set-but-empty in the shell wins, and empty = default."""
    monkeypatch.setenv(ENV_FILE, str(dotenv))
    monkeypatch.setenv("PERSONA_MODEL_ALIAS", "")
    assert load_settings().model_alias == "production"


def test_an_explicit_environment_mapping_reads_no_file(dotenv, monkeypatch):
    monkeypatch.setenv(ENV_FILE, str(dotenv))
    assert load_settings(environ={}).telegram_chat_id == ""
    assert read_env_file(dotenv.parent / "missing.env") == {}


def _make_env(dotenv: Path, *args: str, **environment: str) -> dict[str, str]:
    """The environment a recipe of the real Makefile gets (one line per variable), plus what
    persona.settings makes of it in that recipe."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "TELEGRAM_CHAT_ID"}
    }
    env.update(environment)
    settings = (
        "from persona.settings import load_settings as load; s = load(); "
        "print('SETTINGS_CHAT_ID=' + s.telegram_chat_id)"
    )
    probe = f'_probe: ; @env; {DEV_PYTHON} -c "{settings}"'
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), "-f", "Makefile"]
        + [f"--eval={probe}", f"{ENV_FILE}={dotenv}", *args, "_probe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def test_make_reads_dotenv_below_the_environment_and_the_command_line(dotenv):
    from_file = _make_env(dotenv)
    expected = {k: v for k, v in read_env_file(dotenv).items() if v and k != ENV_FILE}
    assert {key: from_file.get(key) for key in expected} == expected  # as python-dotenv reads it
    assert from_file["TELEGRAM_CHAT_ID"] == from_file["SETTINGS_CHAT_ID"] == "from-file"
    assert from_file["PERSONA_HOME"] == str(ROOT / ".persona")  # empty in .env: make's default
    assert from_file[ENV_FILE] == str(dotenv)

    from_env = _make_env(dotenv, TELEGRAM_CHAT_ID="from-env")
    assert from_env["TELEGRAM_CHAT_ID"] == from_env["SETTINGS_CHAT_ID"] == "from-env"
    assert from_env["PERSONA_MODEL_ALIAS"] == "plain"  # the rest of .env still applies

    from_cli = _make_env(dotenv, "TELEGRAM_CHAT_ID=from-cli", TELEGRAM_CHAT_ID="from-env")
    assert from_cli["TELEGRAM_CHAT_ID"] == from_cli["SETTINGS_CHAT_ID"] == "from-cli"

    without = _make_env(dotenv.parent / "missing.env")
    assert "TELEGRAM_CHAT_ID" not in without and without["SETTINGS_CHAT_ID"] == ""
