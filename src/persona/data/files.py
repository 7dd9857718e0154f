"""CSV/Parquet in and out, chosen by file suffix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from persona.errors import InvalidInputError

SUFFIXES = (".csv", ".parquet", ".pq")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInputError(f"{path}: unsupported file type {suffix!r}; use one of {SUFFIXES}")
    return suffix


def read_table(path: Path, id_column: str | None = None) -> pd.DataFrame:
    path = Path(path)
    suffix = _suffix(path)
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found")
    try:
        if suffix == ".csv":
            dtype = {id_column: str} if id_column else None
            return pd.read_csv(path, dtype=dtype)
        return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InvalidInputError(f"{path}: cannot read: {exc}") from None


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    path = Path(path)
    suffix = _suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path
