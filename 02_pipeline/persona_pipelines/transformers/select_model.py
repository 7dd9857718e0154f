if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer

from persona.orchestration import blocks


@transformer
def select_model(search, frame, *args, **kwargs):
    """Winner among this run's candidates, personas named, pyfunc logged to MLflow."""
    return blocks.select_model(search, frame, kwargs)
