if "data_loader" not in globals():
    from mage_ai.data_preparation.decorators import data_loader

from persona.orchestration import blocks


@data_loader
def load_current(*args, **kwargs):
    """Run variables: month (YYYY-MM), source (table|file|synthetic), path, rows, scenario."""
    return blocks.load_current(kwargs)
