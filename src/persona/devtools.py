"""Repository upkeep: environment.yml and .env.example are generated from their sources.

``python -m persona.devtools environment-yml`` renders environment.yml from requirements/dev.lock;
``python -m persona.devtools env-example`` renders .env.example from the settings registry.
Tests compare the committed files with these renderings.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from persona.settings import env_example_lines

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
    ]
    lines += [f"      - {name}=={version}" for name, version in sorted(pins.items())]
    return "\n".join(lines) + "\n"


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
    elif argv == ["compose-host-network"]:
        import yaml

        rendered = yaml.safe_load(sys.stdin)
        sys.stdout.write(yaml.safe_dump(host_network_config(rendered), sort_keys=False))
    else:
        sys.stderr.write(
            "usage: python -m persona.devtools environment-yml|env-example|compose-host-network\n"
        )
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
