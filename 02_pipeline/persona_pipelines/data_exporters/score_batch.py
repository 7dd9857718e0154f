if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter

from persona.orchestration import blocks


@data_exporter
def score_batch(*args, **kwargs):
    """Run variables: engine (http|local|spark), month, file, out. spark runs the Spark
    environment's persona in its own process group; its summary is this block's output."""
    return blocks.score_batch(kwargs)
