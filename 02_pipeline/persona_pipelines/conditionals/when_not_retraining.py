if "condition" not in globals():
    from mage_ai.data_preparation.decorators import condition

from persona.orchestration import blocks


@condition
def when_not_retraining(drift, *args, **kwargs) -> bool:
    """No drift, too little data, or retraining switched off: report without retraining."""
    return not blocks.is_retraining(drift)
