if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter

from persona.orchestration import blocks


@data_exporter
def alert_retrained(drift, retrained, *args, **kwargs):
    """Telegram: what drifted, the new version and whether it was promoted."""
    return blocks.alert(drift, retrained, kwargs)
