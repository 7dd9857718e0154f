if "data_loader" not in globals():
    from mage_ai.data_preparation.decorators import data_loader

from persona.orchestration import blocks


@data_loader
def load_reference(*args, **kwargs):
    """The reference sample stored with the version holding PERSONA_MODEL_ALIAS."""
    return blocks.load_reference(kwargs)
