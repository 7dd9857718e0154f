"""HTTP client of the scoring API, used by the batch scoring job (and anyone scripting it)."""

from __future__ import annotations

import io
import logging
import time

import pandas as pd
import requests

from persona.errors import InvalidInputError, UpstreamUnavailableError
from persona.segmentation import DEFAULT

logger = logging.getLogger(__name__)


class ScoringClient:
    """Posts CSV chunks (the cheapest format to build and parse) and reads CSV answers."""

    def __init__(
        self, url: str, token: str = "", timeout_s: float = 120.0, segmentation: str = DEFAULT
    ) -> None:
        self.url = url.rstrip("/")
        # the default segmentation's model answers /predict; another one's its own route
        self.path = (
            "/predict" if segmentation == DEFAULT else f"/segmentations/{segmentation}/predict"
        )
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers.update({"Content-Type": "text/csv", "Accept": "text/csv"})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def score(self, chunk: pd.DataFrame, attempts: int = 3, backoff_s: float = 1.0) -> pd.DataFrame:
        """One chunk; transport errors and 5xx are retried, a 4xx is the caller's data problem."""
        body = chunk.to_csv(index=False).encode()
        problem = ""
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.post(
                    f"{self.url}{self.path}", data=body, timeout=self.timeout_s
                )
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}"
            else:
                if response.status_code == 200:
                    return pd.read_csv(io.BytesIO(response.content), dtype={"model_version": str})
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if 400 <= response.status_code < 500:
                    raise InvalidInputError(problem)
            if attempt < attempts:
                logger.warning(
                    "chunk attempt %d/%d failed (%s); retrying", attempt, attempts, problem
                )
                time.sleep(backoff_s * 2 ** (attempt - 1))
        raise UpstreamUnavailableError(f"scoring API at {self.url}: {problem}")
