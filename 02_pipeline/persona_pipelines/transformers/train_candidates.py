if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer

from persona.orchestration import blocks


@transformer
def train_candidates(frame, *args, **kwargs):
    """Fits every candidate of 01_model/params.yaml; one nested MLflow run each."""
    return blocks.train_candidates(frame, kwargs)
