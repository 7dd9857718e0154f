if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer

from persona.orchestration import blocks


@transformer
def retrain_on_drift(drift, reference, current, *args, **kwargs):
    """The training steps on reference + current rows; champion/challenger decides promotion."""
    return blocks.retrain_on_drift(drift, reference, current, kwargs)
