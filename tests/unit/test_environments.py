"""The three pinned environments and environment.yml must agree where they overlap."""

from pathlib import Path

from persona_tools.devtools import environment_yml, read_pins

ROOT = Path(__file__).resolve().parents[2]
REQ = ROOT / "requirements"
SHARED_ML = (
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "skops",
    "joblib",
    "threadpoolctl",
    "pyarrow",
)


def test_pipeline_and_scoring_share_the_ml_stack():
    pipeline, scoring = read_pins(REQ / "pipeline.lock"), read_pins(REQ / "scoring.lock")
    for package in SHARED_ML:
        assert pipeline[package] == scoring[package], package


def test_dev_lock_extends_pipeline_lock_unchanged():
    pipeline, dev = read_pins(REQ / "pipeline.lock"), read_pins(REQ / "dev.lock")
    changed = {name: (v, dev.get(name)) for name, v in pipeline.items() if dev.get(name) != v}
    assert not changed


def test_environment_yml_is_generated_from_dev_lock():
    assert (ROOT / "environment.yml").read_text() == environment_yml(REQ / "dev.lock")


def test_service_pins_named_in_stack_notes():
    pipeline = read_pins(REQ / "pipeline.lock")
    assert pipeline["mage-ai"] == "0.9.80"
    assert pipeline["evidently"] == "0.7.23"
    assert pipeline["mlflow-skinny"] == read_pins(REQ / "mlflow-server.lock")["mlflow"]
    assert "mlflow" not in pipeline  # the full server lives in its own environment


def test_service_images_install_the_lock_and_run_the_local_entry_command():
    """A container runs what the no-Docker stack runs, from the lock the Makefile installs."""
    makefile = (ROOT / "Makefile").read_text()
    for image, lock, module in [
        ("pipeline", "pipeline.lock", "persona.services.mage"),
        ("mlflow-server", "mlflow-server.lock", "persona.services.mlflow_server"),
    ]:
        dockerfile = (ROOT / f"05_iac/docker/{image}.Dockerfile").read_text()
        assert (
            f"uv pip sync --system --no-cache --compile-bytecode requirements/{lock}" in dockerfile
        )
        assert f'CMD ["python", "-m", "{module}"]' in dockerfile
        assert f"-m {module}" in makefile
    scoring = (ROOT / "05_iac/docker/scoring.Dockerfile").read_text()
    assert "uv pip sync --system --no-cache --compile-bytecode requirements/scoring.lock" in scoring
    assert 'CMD ["gunicorn", "-c", "03_deployment/gunicorn.conf.py"]' in scoring
    assert "gunicorn -c 03_deployment/gunicorn.conf.py" in makefile


def test_pipeline_image_carries_every_config_file_the_settings_default_to():
    """Found by running the image: training needs 04_monitoring/drift.yaml, which it lacked."""
    from persona.settings import VARIABLES

    dockerfile = (ROOT / "05_iac/docker/pipeline.Dockerfile").read_text()
    copied = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    for name in ("catalogue_path", "schema_path", "params_path", "drift_config_path"):
        default = VARIABLES[name].default
        assert any(default == c or default.startswith(c.rstrip("/") + "/") for c in copied), default
    assert any(c.startswith("02_pipeline") for c in copied)


def test_images_and_service_environments_get_the_shipped_package_only():
    """Development tooling (tools/, persona_tools) and tests stay out of images and services."""
    for dockerfile in sorted((ROOT / "05_iac/docker").glob("*.Dockerfile")):
        copies = [line.split() for line in dockerfile.read_text().splitlines()]
        sources = [w for words in copies if words[:1] == ["COPY"] for w in words[1:-1]]
        tops = {source.split("/")[0] for source in sources if not source.startswith("--")}
        assert tops and not tops & {".", "tools", "tests"}, (dockerfile.name, tops)
    assert {"tools", "tests"} <= set((ROOT / ".dockerignore").read_text().split())
    installs = [line for line in (ROOT / "Makefile").read_text().splitlines() if "-e tools" in line]
    assert installs and all(
        line.strip().startswith("VIRTUAL_ENV=$(VENV)/dev ") for line in installs
    )
    # The shipped package never imports the tools (they import it).
    for module in (ROOT / "src/persona").rglob("*.py"):
        assert "persona_tools" not in module.read_text(), module


def test_compose_config_for_host_networking_drops_ports_and_networks_only():
    from persona_tools.devtools import host_network_config

    rendered = {
        "version": "3.9",
        "networks": {"default": {}},
        "services": {
            "api": {
                "image": "persona/scoring:local",
                "ports": ["127.0.0.1:8080:8080"],
                "networks": ["default"],
                "build": {"context": ".", "dockerfile": "05_iac/docker/scoring.Dockerfile"},
                "environment": {"PERSONA_SCORING_PORT": "18080"},
            },
            "postgres": {"image": "postgres:15.10-bookworm", "ports": ["5432:5432"]},
        },
    }
    config = host_network_config(rendered)
    assert "version" not in config and "networks" not in config
    api = config["services"]["api"]
    assert api["network_mode"] == "host" and "ports" not in api and "networks" not in api
    assert (
        api["build"]["network"] == "host" and api["environment"]["PERSONA_SCORING_PORT"] == "18080"
    )
    assert config["services"]["postgres"] == {
        "image": "postgres:15.10-bookworm",
        "network_mode": "host",
    }
    assert rendered["services"]["api"]["ports"]  # the input is left alone


def test_extra_mlflow_hosts_keep_the_loopback_names_a_browser_sends():
    """Compose adds its service name; MLflow then dropped 127.0.0.1:5000 and answered 403."""
    from persona.services.mlflow_server import allowed_hosts, server_command
    from persona.settings import load_settings

    assert allowed_hosts("mlflow, mlflow:5000,localhost") == (
        "localhost,localhost:*,127.0.0.1,127.0.0.1:*,mlflow,mlflow:5000"
    )
    settings = load_settings(environ={"MLFLOW_ALLOWED_HOSTS": "mlflow"})
    command = server_command(settings)
    assert command[command.index("--allowed-hosts") + 1].endswith("127.0.0.1:*,mlflow")
    assert "--allowed-hosts" not in server_command(load_settings(environ={}))
