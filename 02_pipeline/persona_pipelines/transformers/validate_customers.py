if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer

from persona.orchestration import blocks


@transformer
def validate_customers(frame, *args, **kwargs):
    """Stops the run with a report naming column, rule, count and rows when data is bad."""
    return blocks.validate_customers(frame, kwargs)
