"""Which customers are held out of training: the rows champion and challenger are judged on.

Hash-based, so the same customers are held out whatever the row order and on every rerun.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from persona.data.schema import DatasetSchema
from persona.errors import ConfigurationError


@dataclass(frozen=True)
class Split:
    """The fitted rows and the held-out rows of one training frame.

    For a retrain after drift, ``holdout`` holds the current period's held-out customers (they
    decide) and ``reference_holdout`` the reference period's (they guard); else it is None.
    """

    train: pd.DataFrame
    holdout: pd.DataFrame
    reference_holdout: pd.DataFrame | None = None


def split_holdout(frame: pd.DataFrame, schema: DatasetSchema, fraction: float) -> Split:
    """Hash of the customer id decides: the same customers are held out whatever the row order."""
    held = _held(frame[schema.id_column], fraction)
    return Split(frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True))


def _held(values: pd.Series, fraction: float) -> np.ndarray:
    """Hash of the text decides which rows are held out: the same whatever the row order."""
    hashed = pd.util.hash_pandas_object(values.astype(str), index=False).to_numpy()
    return (hashed % 10_000) < int(fraction * 10_000)


def split_periods(
    frame: pd.DataFrame, schema: DatasetSchema, fraction: float, current_keys: pd.DataFrame
) -> Split:
    """A retrain's split: current rows (their key in ``current_keys``) held out by customer id
    as in every split -- customers the served model never saw either -- and reference rows held
    out by their key (id and month) or their id.

    The reference rows are the served model's reference sample, fitted rows of its own split,
    so none of their ids is held out: the key hash holds out a share of them all the same (the
    served model has seen those, which tilts the guard its way; measured negligible, see
    ``persona.model.evaluate``). Hash-based: the same rows are held out on every rerun.
    """
    key = list(schema.key)
    missing = [c for c in key if c not in frame.columns or c not in current_keys.columns]
    if missing:
        raise ConfigurationError(
            f"a retrain tells current rows from reference rows by the key {key}; "
            f"column(s) {missing} missing from the training rows or the current keys"
        )
    current = pd.MultiIndex.from_frame(frame[key].astype(str)).isin(
        pd.MultiIndex.from_frame(current_keys[key].astype(str))
    )
    by_id = _held(frame[schema.id_column], fraction)
    joined = frame[key[0]].astype(str)
    for column in key[1:]:
        joined = joined + "|" + frame[column].astype(str)
    by_key = _held(joined, fraction)
    holdout = current & by_id
    reference = ~current & (by_id | by_key)
    return Split(
        frame[~(holdout | reference)].reset_index(drop=True),
        frame[holdout].reset_index(drop=True),
        frame[reference].reset_index(drop=True),
    )
