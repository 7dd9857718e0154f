"""Terraform glue: read the HCL in ``05_iac/terraform`` and carry its outputs into ``.env``.

There is no Terraform binary in tests or CI, so the configuration is checked offline by
parsing it (python-hcl2) and asserting what matters: private, versioned bucket; lifecycle
rules that never touch live objects; object access granted on the bucket only.

``make tf-env`` runs ``terraform output -json | python -m persona.iac tf-env
--outputs-json - --env-file .env`` so the settings MLflow reads (``GCS_BUCKET``,
``GCS_PREFIX``, ``MLFLOW_ARTIFACTS_DESTINATION``) come from the applied infrastructure instead
of being typed by hand. The rest of ``.env`` (comments, secrets, other keys) is left alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from persona.errors import ConfigurationError, PersonaError

logger = logging.getLogger(__name__)

TERRAFORM_DIR = Path("05_iac/terraform")

# terraform output name -> environment variable (a persona.settings.VARIABLES entry, tested).
TF_ENV_OUTPUTS: dict[str, str] = {
    "gcs_bucket": "GCS_BUCKET",
    "gcs_prefix": "GCS_PREFIX",
    "mlflow_artifacts_destination": "MLFLOW_ARTIFACTS_DESTINATION",
}

_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Values that the Makefile's .env reader, Compose's env_file and a shell all read the same way
# unquoted: no whitespace, quotes, `#` (comment), `$` (expansion) or backslashes.
_SAFE_VALUE = re.compile(r"^[^\s#'\"$\\]*$")
_ASSIGNMENT = re.compile(r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=")


def read_hcl(folder: Path | str = TERRAFORM_DIR) -> dict[str, list[Any]]:
    """Every ``*.tf`` in ``folder`` parsed and merged by top-level block type.

    Strings come back unquoted and without block markers, so a test can compare
    ``bucket["public_access_prevention"] == "enforced"`` directly. Each block type maps to a
    list of the per-file entries, as python-hcl2 returns them for a single file.
    """
    files = sorted(Path(folder).glob("*.tf"))
    if not files:
        raise ConfigurationError(f"no .tf files in {folder}")
    merged: dict[str, list[Any]] = {}
    for path in files:
        for block_type, entries in load_hcl_file(path).items():
            merged.setdefault(block_type, []).extend(entries)
    return merged


def load_hcl_file(path: Path | str) -> dict[str, Any]:
    """One HCL file (``.tf`` or ``.tfvars``) as python-hcl2 reads it, strings unquoted."""
    import hcl2  # only the offline checks need it; tf-env must run without it
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    path = Path(path)
    try:
        with path.open() as handle:
            return hcl2.load(handle, serialization_options=options)
    except Exception as exc:  # noqa: BLE001 - lark raises many types; name the file instead
        raise ConfigurationError(f"{path}: not valid HCL ({exc})") from exc


def _named_blocks(hcl: Mapping[str, list[Any]], block_type: str) -> dict[str, dict[str, Any]]:
    """``variable "x" {...}`` / ``output "x" {...}`` blocks as name -> body."""
    blocks: dict[str, dict[str, Any]] = {}
    for entry in hcl.get(block_type, []):
        for name, body in entry.items():
            if name in blocks:
                raise ConfigurationError(f"{block_type} {name!r} is declared twice")
            blocks[name] = body
    return blocks


def resources(hcl: Mapping[str, list[Any]], resource_type: str) -> dict[str, dict[str, Any]]:
    """Every ``resource "<resource_type>" "name" {...}`` as name -> body."""
    found: dict[str, dict[str, Any]] = {}
    for entry in hcl.get("resource", []):
        for name, body in entry.get(resource_type, {}).items():
            found[name] = body
    return found


def declared_outputs(folder: Path | str = TERRAFORM_DIR) -> dict[str, dict[str, Any]]:
    """Output name -> body, so tests can check every output tf-env needs is declared."""
    return _named_blocks(read_hcl(folder), "output")


def declared_variables(folder: Path | str = TERRAFORM_DIR) -> dict[str, dict[str, Any]]:
    """Variable name -> body (description, type, default, validation)."""
    return _named_blocks(read_hcl(folder), "variable")


def env_updates_from_outputs(outputs_json: Mapping[str, Any]) -> dict[str, str]:
    """Env var -> value for each output in TF_ENV_OUTPUTS, from ``terraform output -json``.

    Fails naming the missing output when the state has none (nothing applied yet) or an older
    configuration did not declare it, rather than writing an empty bucket into .env.
    """
    if not outputs_json:
        raise ConfigurationError("terraform has no outputs: run `make tf-apply` first")
    updates: dict[str, str] = {}
    for output, env in TF_ENV_OUTPUTS.items():
        entry = outputs_json.get(output)
        if not isinstance(entry, Mapping) or "value" not in entry:
            raise ConfigurationError(
                f"terraform output {output!r} (for {env}) is missing: run `make tf-apply`"
            )
        value = entry["value"]
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"terraform output {output!r} (for {env}) must be a non-empty string, "
                f"got {value!r}"
            )
        updates[env] = value
    return updates


def env_lines_from_outputs(outputs_json: Mapping[str, Any]) -> list[str]:
    """``KEY=value`` lines for .env, in TF_ENV_OUTPUTS order."""
    return [f"{key}={value}" for key, value in env_updates_from_outputs(outputs_json).items()]


def _check_update(key: str, value: str) -> None:
    if not _ENV_KEY.match(key):
        raise ConfigurationError(f"{key!r} is not an environment variable name")
    if not _SAFE_VALUE.match(value):
        raise ConfigurationError(
            f"{key}={value!r} cannot be written unquoted to .env "
            "(whitespace, quotes, '#', '$' or backslash)"
        )


def merge_env_file(
    path: Path | str, updates: Mapping[str, str], template: Path | str | None = None
) -> None:
    """Set ``updates`` in the dotenv file at ``path``; every other line stays as it was.

    Existing assignments are rewritten in place (all of them, so a duplicate further down
    cannot win); new keys are appended under one comment. Running it twice changes nothing.
    When ``path`` does not exist it starts from ``template`` (default: ``.env.example`` next
    to it) so the new file still documents every variable. The write is atomic and a new
    file is private (0600): .env also holds tokens.
    """
    path = Path(path)
    for key, value in updates.items():
        _check_update(key, value)
    template = Path(template) if template is not None else path.with_name(".env.example")
    if path.exists():
        lines = path.read_text().splitlines()
        mode = path.stat().st_mode & 0o777
    else:
        lines = template.read_text().splitlines() if template.exists() else []
        mode = 0o600
        logger.info("creating %s from %s", path, template if template.exists() else "nothing")

    seen: set[str] = set()
    merged: list[str] = []
    for line in lines:
        match = _ASSIGNMENT.match(line)
        if match and match.group("key") in updates:
            key = match.group("key")
            merged.append(f"{match.group('lead')}{key}={updates[key]}")
            seen.add(key)
        else:
            merged.append(line)
    missing = [key for key in updates if key not in seen]
    if missing:
        if merged and merged[-1].strip():
            merged.append("")
        merged.append("# From Terraform outputs (make tf-env)")
        merged += [f"{key}={updates[key]}" for key in missing]

    text = "\n".join(merged) + "\n"
    if path.exists() and path.read_text() == text:
        logger.info("%s already up to date", path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("wrote %s to %s", ", ".join(updates), path)


def _read_outputs(source: str) -> dict[str, Any]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        outputs = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"terraform output -json is not JSON: {exc}") from None
    if not isinstance(outputs, dict):
        raise ConfigurationError("terraform output -json must be a JSON object")
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m persona.iac tf-env --outputs-json FILE|- --env-file .env``.

    Writes the updated ``KEY=value`` lines to stdout; errors are logged and mapped to the
    PersonaError exit codes, with no traceback.
    """
    from persona.entry import guarded

    parser = argparse.ArgumentParser(prog="python -m persona.iac")
    commands = parser.add_subparsers(dest="command", required=True)
    tf_env = commands.add_parser("tf-env", help="write Terraform outputs into .env")
    tf_env.add_argument(
        "--outputs-json", required=True, help="`terraform output -json` file, or - for stdin"
    )
    tf_env.add_argument("--env-file", default=".env", type=Path, help="dotenv file to update")
    tf_env.add_argument(
        "--template", type=Path, default=None, help="used when the env file is absent"
    )
    args = parser.parse_args(argv)
    return guarded(lambda: _tf_env(args), logger)


def _tf_env(args: argparse.Namespace) -> None:
    from persona.logging_setup import configure_logging
    from persona.settings import load_settings

    try:
        level = load_settings().log_level
    except PersonaError:
        level = "INFO"  # a bad unrelated setting must not stop .env from being repaired
    configure_logging(level, stream=sys.stderr)
    try:
        updates = env_updates_from_outputs(_read_outputs(args.outputs_json))
        merge_env_file(args.env_file, updates, args.template)
    except OSError as exc:  # an unreadable outputs file or .env: exit 1, one line
        raise PersonaError(str(exc)) from None
    sys.stdout.write("".join(f"{key}={value}\n" for key, value in updates.items()))


if __name__ == "__main__":
    # Run the imported module's main, so log records are named persona.iac, not __main__.
    from persona.iac import main as _main

    raise SystemExit(_main())
