if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter

from persona.orchestration import blocks


@data_exporter
def register_model(selection, frame, *args, **kwargs):
    """Champion/challenger on held-out rows; moves PERSONA_MODEL_ALIAS or @challenger."""
    return blocks.register_model(selection, frame, kwargs)
