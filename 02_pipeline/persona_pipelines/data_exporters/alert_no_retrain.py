if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter

from persona.orchestration import blocks


@data_exporter
def alert_no_retrain(drift, *args, **kwargs):
    """Telegram: all clear, too little data, or drift with retraining switched off."""
    return blocks.alert(drift, None, kwargs)
