"""Repository upkeep: environment.yml, .env.example and the README's settings table are generated.

``python -m persona_tools.devtools environment-yml`` renders environment.yml from
requirements/dev.lock; ``python -m persona_tools.devtools env-example`` renders .env.example from
the settings registry; ``python -m persona_tools.devtools config-reference [--write README.md]``
renders (or rewrites in place) the README's configuration table from the same registry.
Tests compare the committed files with these renderings.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from persona.settings import (
    CONFIG_REFERENCE_END,
    CONFIG_REFERENCE_START,
    config_reference_markdown,
    env_example_lines,
)

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")


def read_pins(lock: Path) -> dict[str, str]:
    """name -> version of every ``name==version`` line (names normalised like pip)."""
    pins = {}
    for line in Path(lock).read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def environment_yml(lock: Path = Path("requirements/dev.lock")) -> str:
    pins = read_pins(lock)
    lines = [
        "# Conda recreation of the pipeline/dev environment, generated from requirements/dev.lock by",
        "# `make locks` (a test fails when the two disagree). The pins are a complete, pre-resolved set",
        "# that overrides two of mage-ai's pins, so install them without re-resolving:",
        "#   PIP_NO_DEPS=1 conda env create -f environment.yml",
        "name: persona",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
        "      - -e .",
        "      - -e tools",
    ]
    lines += [f"      - {name}=={version}" for name, version in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def config_reference_block(text: str) -> str:
    """What a document holds between the config-reference markers (a test compares it)."""
    start, end = text.find(CONFIG_REFERENCE_START), text.find(CONFIG_REFERENCE_END)
    if start < 0 or end < start:
        raise ValueError(f"no {CONFIG_REFERENCE_START} ... {CONFIG_REFERENCE_END} block")
    return text[start + len(CONFIG_REFERENCE_START) : end].strip("\n") + "\n"


def with_config_reference(text: str) -> str:
    """``text`` with the block between the markers replaced by the generated table."""
    config_reference_block(text)  # fails with the marker names when they are missing
    head, rest = text.split(CONFIG_REFERENCE_START, 1)
    _, tail = rest.split(CONFIG_REFERENCE_END, 1)
    table = config_reference_markdown()
    return f"{head}{CONFIG_REFERENCE_START}\n{table}{CONFIG_REFERENCE_END}{tail}"


def host_network_config(rendered: dict) -> dict:
    """A rendered Compose config (``docker-compose config``) rewritten for host networking.

    The stack test's machine may not have a docker bridge. docker-compose 1.29 refuses
    ``network_mode: host`` next to published ports and cannot drop a base file's ports from an
    override, so the test renders the users' file and strips ports and networks here.
    """
    config = {key: value for key, value in rendered.items() if key not in ("version", "networks")}
    services = {}
    for name, service in (rendered.get("services") or {}).items():
        service = {k: v for k, v in service.items() if k not in ("ports", "networks", "links")}
        service["network_mode"] = "host"
        if isinstance(service.get("build"), dict):
            service["build"] = {**service["build"], "network": "host"}
        services[name] = service
    config["services"] = services
    return config


def main(argv: list[str]) -> int:
    if argv == ["environment-yml"]:
        sys.stdout.write(environment_yml())
    elif argv == ["env-example"]:
        sys.stdout.write("\n".join(env_example_lines()) + "\n")
    elif argv == ["config-reference"]:
        sys.stdout.write(config_reference_markdown())
    elif len(argv) == 3 and argv[:2] == ["config-reference", "--write"]:
        path = Path(argv[2])
        path.write_text(with_config_reference(path.read_text()))
    elif argv == ["compose-host-network"]:
        import yaml

        rendered = yaml.safe_load(sys.stdin)
        sys.stdout.write(yaml.safe_dump(host_network_config(rendered), sort_keys=False))
    else:
        sys.stderr.write(
            "usage: python -m persona_tools.devtools environment-yml | env-example"
            " | config-reference [--write README.md] | compose-host-network\n"
        )
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
