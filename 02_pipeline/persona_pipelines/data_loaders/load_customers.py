if "data_loader" not in globals():
    from mage_ai.data_preparation.decorators import data_loader

from persona.orchestration import blocks


@data_loader
def load_customers(*args, **kwargs):
    """Run variables: source (table|file|synthetic), months, path, rows, seed, scenario."""
    return blocks.load_customers(kwargs)
