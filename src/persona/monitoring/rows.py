"""The customer rows monitoring works on, other than a plain month: what the scoring API
scored, as customer rows, and the rows a retrain fits on."""

from __future__ import annotations

import pandas as pd

from persona.data.schema import DatasetSchema


def frame_from_scoring_log(logged: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Scored rows as customer rows: the latest score per customer, month from the score time.

    A customer scored twice would count twice in the distribution; rows sent without an id are
    each their own customer.
    """
    columns = [schema.id_column, schema.month_column, *schema.features]
    if logged.empty:
        return pd.DataFrame(columns=columns)
    frame = logged.copy()
    missing_id = frame["customer_id"].isna()
    frame.loc[missing_id, "customer_id"] = [f"anonymous-{i}" for i in range(missing_id.sum())]
    frame = frame.drop_duplicates("customer_id", keep="last")
    frame[schema.id_column] = frame["customer_id"].astype(str)
    frame[schema.month_column] = pd.to_datetime(frame["scored_at"], utc=True).dt.strftime("%Y-%m")
    return frame[columns].reset_index(drop=True)


def training_rows(
    reference: pd.DataFrame, current: pd.DataFrame, schema: DatasetSchema
) -> pd.DataFrame:
    """Reference and current rows to retrain on, one row per customer and month: where both
    hold the same key (a month the reference was already trained on), the current row wins."""
    frame = pd.concat([reference, current[reference.columns]], ignore_index=True)
    key = [column for column in schema.key if column in frame.columns]
    if len(key) == len(schema.key):
        frame = frame.drop_duplicates(subset=key, keep="last", ignore_index=True)
    return frame
