if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer

from persona.orchestration import blocks


@transformer
def check_drift(reference, current, *args, **kwargs):
    """Evidently DataDriftPreset at the thresholds of 04_monitoring/drift.yaml; HTML report."""
    return blocks.check_drift(reference, current, kwargs)
