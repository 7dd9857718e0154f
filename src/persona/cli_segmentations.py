"""The ``persona segmentation`` and ``persona personas`` commands: what each segmentation owns
and serves, and the names of its personas. Handlers of :mod:`persona.cli` (entry point layer).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from persona.errors import ConfigurationError, ModelUnavailableError, PersonaError
from persona.settings import Settings


def _served_personas(settings: Settings) -> tuple[Any, Any, list[Any]]:
    """The segmentation's registry, the version it serves and that version's personas."""
    from persona.composition import mlflow_models

    models = mlflow_models(settings)
    holder = models.version_holding(settings.model_alias)
    if holder is None:
        raise ModelUnavailableError(
            f"{settings.model_name} has no version @{settings.model_alias}: train one first"
        )
    model = models.load(models.alias_uri(settings.model_alias)).unwrap_python_model()
    unique = {p.persona_id: p for p in model.personas.values()}
    return models, holder, [unique[i] for i in sorted(unique)]


def personas_list(args: argparse.Namespace, settings: Settings) -> Any:
    models, holder, personas = _served_personas(settings)
    renames = models.persona_names()
    return {
        "segmentation": settings.segmentation,
        "model": f"{settings.model_name} v{holder.version}",
        "personas": [
            {
                "persona_id": p.persona_id,
                "name": renames.get(p.persona_id, p.name),
                "model_name": p.name,
                "share": round(p.share, 4),
                "description": p.description,
            }
            for p in personas
        ],
    }


def personas_rename(args: argparse.Namespace, settings: Settings) -> Any:
    models, holder, personas = _served_personas(settings)
    name = " ".join(args.name.split())
    if not name or len(name) > 80:
        raise ConfigurationError(f"a persona name must have 1 to 80 characters, got {args.name!r}")
    by_id = {p.persona_id: p for p in personas}
    if args.persona_id not in by_id:
        raise ConfigurationError(
            f"{settings.model_name} v{holder.version} has no persona {args.persona_id}; its "
            f"personas: {', '.join(f'{i} {p.name!r}' for i, p in by_id.items())}"
        )
    renames = models.persona_names()
    taken = {renames.get(i, p.name): i for i, p in by_id.items()}
    if taken.get(name, args.persona_id) != args.persona_id:
        raise ConfigurationError(f"persona {taken[name]} is already called {name!r}")
    previous = renames.get(args.persona_id, by_id[args.persona_id].name)
    models.rename_persona(args.persona_id, name)
    return {
        "segmentation": settings.segmentation,
        "persona_id": args.persona_id,
        "name": name,
        "was": previous,
        "served": f"by the API within PERSONA_MODEL_POLL_SECONDS ({settings.model_poll_seconds:g}s) "
        "or at once after POST /admin/reload; kept by later retrains",
    }


def segmentation_add(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.composition import for_segmentation, segmentations
    from persona.segmentation import checked_definition

    files = {
        "schema": Path(args.schema),
        "params": Path(args.params) if args.params else settings.params_path,
        "drift": Path(args.drift) if args.drift else settings.drift_config_path,
    }
    texts = {}
    for role, path in files.items():
        if not path.is_file():
            raise ConfigurationError(f"{role} file not found: {path}")
        texts[role] = path.read_text()
    definition = checked_definition(
        args.name,
        texts["schema"],
        texts["params"],
        texts["drift"],
        {k: str(v) for k, v in files.items()},
    )
    segmentations(settings).add(definition, replace=args.replace)
    return _segmentation_summary(for_segmentation(settings, args.name), with_model=False)


def _segmentation_summary(
    settings: Settings, with_model: bool = True, registry_error: list[str] | None = None
) -> dict[str, Any]:
    """What a segmentation owns, and (when MLflow answers) the version it serves.

    ``registry_error`` keeps the first failure to reach MLflow, so a list asks it once."""
    summary: dict[str, Any] = {
        "name": settings.segmentation,
        "customers_table": settings.customers_table,
        "scores_table": settings.scores_table,
        "model_name": settings.model_name,
        "experiment": settings.mlflow_experiment,
        "schema": str(settings.schema_path),
    }
    if with_model and registry_error:
        summary[settings.model_alias] = f"unknown ({registry_error[0]})"
    elif with_model:
        from persona.composition import mlflow_models

        try:
            models = mlflow_models(settings, connect_timeout_s=5.0)
            holder = models.version_holding(settings.model_alias)
            summary[settings.model_alias] = holder.version if holder else None
        except PersonaError as exc:
            summary[settings.model_alias] = f"unknown ({exc})"
            if registry_error is not None:
                registry_error.append(str(exc))
    return summary


def segmentation_list(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.composition import for_segmentation, segmentations
    from persona.segmentation import DEFAULT

    names = [DEFAULT, *(d.name for d in segmentations(settings).all())]
    failed: list[str] = []
    return [_segmentation_summary(for_segmentation(settings, name), True, failed) for name in names]


def segmentation_remove(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.composition import for_segmentation, mlflow_models, segmentations
    from persona.segmentation import DEFAULT

    if args.name == DEFAULT:
        raise ConfigurationError(f"the {DEFAULT!r} segmentation is the stack's own; it stays")
    own = for_segmentation(settings, args.name)
    models = mlflow_models(own)
    holder = models.version_holding(own.model_alias)
    if holder is not None:
        if not args.force:
            raise ConfigurationError(
                f"segmentation {args.name!r} serves {own.model_name} v{holder.version} "
                f"@{own.model_alias}; remove it with --force (the API stops serving it; its "
                "tables and model versions are kept)"
            )
        models.retire(own.model_alias, holder.version, f"segmentation {args.name} removed")
        models.untag()
    segmentations(settings).remove(args.name)
    return {
        "removed": args.name,
        "retired_version": holder.version if holder else None,
        "kept": [own.customers_table, own.scores_table, own.model_name],
    }
