"""The batch job refuses a file that cannot be scored before sending anything."""

from pathlib import Path

import pandas as pd
import pytest

from persona.data.schema import load_schema
from persona.errors import InvalidInputError
from persona.flows.score import score_frame

ROOT = Path(__file__).resolve().parents[2]


class NoCalls:
    def score(self, chunk):  # pragma: no cover - must not be reached
        raise AssertionError("nothing may be sent")


def test_a_file_without_the_feature_columns_is_named_not_a_key_error():
    schema = load_schema(ROOT / "00_create_data/schema.yaml")
    frame = pd.DataFrame({"customer_id": ["C1"], "age": [30], "Income": [1000]})
    with pytest.raises(InvalidInputError, match="annual_income") as info:
        score_frame(frame, schema, NoCalls())
    assert "Income" in str(info.value)
