if "condition" not in globals():
    from mage_ai.data_preparation.decorators import condition

from persona.orchestration import blocks


@condition
def when_retraining(drift, *args, **kwargs) -> bool:
    """Drift found, enough data and the run variable retrain is not false."""
    return blocks.is_retraining(drift)
