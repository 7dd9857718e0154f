if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter

from persona.orchestration import blocks


@data_exporter
def store_drift(check, reference, *args, **kwargs):
    """One drift_runs row and one drift_columns row per column; decides retrain or not."""
    return blocks.store_drift(check, reference, kwargs)
