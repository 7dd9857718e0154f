if "condition" not in globals():
    from mage_ai.data_preparation.decorators import condition

from persona.orchestration import blocks


@condition
def register_when_enabled(*args, **kwargs) -> bool:
    """Run variable register=false: compare candidates in MLflow without touching the registry."""
    return blocks.registration_enabled(kwargs)
