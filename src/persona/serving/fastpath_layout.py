"""The fast path's reading of a fitted ColumnTransformer: what it does to each column, as arrays.

``compile_preprocessor`` turns the ``preprocess`` step of a persona pipeline into a ``Layout``
(numeric blocks of ops, categorical lookups into the one-hot feature space) that
``persona.serving.fastpath.CompiledModel`` applies per batch; anything it does not recognise is
``unsupported`` (the caller falls back to the pyfunc).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, RobustScaler, StandardScaler

from persona.errors import ModelUnavailableError

# Code of a categorical value that selects no one-hot column. Tables carry an all-zero last
# row, so gathering with -1 adds nothing: no per-row masking on the hot path.
UNKNOWN = -1
IGNORE_UNKNOWN = {"ignore", "infrequent_if_exist", "warn"}


@dataclass(frozen=True)
class CategoricalColumn:
    position: int  # index into ``CompiledModel.categorical`` (the caller's arrays)
    lookup: dict[Any, int]  # level -> column of the preprocessed feature space
    missing: int  # column a missing (NaN) value lands in after imputation, or UNKNOWN


@dataclass(frozen=True)
class NumericBlock:
    """One numeric transformer: ops applied in order to its columns of the caller's array."""

    inputs: np.ndarray  # positions in ``CompiledModel.numeric``
    ops: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Layout:
    """What the ColumnTransformer does, as arrays: numeric ops and categorical lookups."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    numeric_blocks: tuple[NumericBlock, ...]
    numeric_dims: np.ndarray  # feature-space column of each preprocessed numeric column
    categorical_columns: tuple[CategoricalColumn, ...]
    weights: np.ndarray  # per feature-space column: its one-hot value (0 for numeric ones)
    n_dims: int


def unsupported(what: str) -> ModelUnavailableError:
    return ModelUnavailableError(f"fast path does not support {what}; use the pyfunc")


def frozen(array: np.ndarray) -> np.ndarray:
    """Contiguous, read-only copy: compiled models are shared between request threads."""
    out = np.array(array, dtype=np.float64, order="C", copy=True)
    out.setflags(write=False)
    return out


def with_zero_row(table: np.ndarray) -> np.ndarray:
    """Append the all-zero row that ``UNKNOWN`` (-1) gathers."""
    return frozen(np.concatenate([table, np.zeros((1, *table.shape[1:]))], axis=0))


def _is_nan(value: Any) -> bool:
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return False


def _steps(transformer: Any) -> list[Any]:
    if type(transformer) is Pipeline:
        return [step for _, step in transformer.steps if step is not None and step != "passthrough"]
    return [transformer]


def _column_names(columns: Any, block: str) -> list[str]:
    if isinstance(columns, list | tuple | np.ndarray) and all(isinstance(c, str) for c in columns):
        return [str(c) for c in columns]
    raise unsupported(f"column selection {columns!r} of transformer {block!r} (need names)")


def _imputer_keep(imputer: SimpleImputer, n_columns: int, block: str) -> tuple[np.ndarray, Any]:
    """Kept columns and their fill values, exactly as ``SimpleImputer.transform`` decides."""
    if not (isinstance(imputer.missing_values, float) and math.isnan(imputer.missing_values)):
        raise unsupported(f"SimpleImputer(missing_values={imputer.missing_values!r}) in {block!r}")
    if imputer.add_indicator:
        raise unsupported(f"SimpleImputer(add_indicator=True) in {block!r}")
    statistics = np.asarray(imputer.statistics_)
    if statistics.shape != (n_columns,):
        raise unsupported(f"SimpleImputer with {statistics.shape} statistics in {block!r}")
    if imputer.strategy == "constant" or imputer.keep_empty_features:
        keep = np.ones(n_columns, dtype=bool)
    else:
        keep = ~np.asarray(statistics != statistics, dtype=bool)
    return keep, statistics[keep]


def _numeric_block(
    transformer: Any, columns: list[str], weight: float | None, block: str
) -> tuple[list[tuple[str, Any]], int]:
    """Ops applied in order to the (n, len(columns)) float array, and the output width."""
    ops: list[tuple[str, Any]] = []
    width = len(columns)
    for step in _steps(transformer):
        kind, start = type(step), len(ops)
        if kind is SimpleImputer:
            keep, fill = _imputer_keep(step, width, block)
            if fill.dtype.kind not in "fiu":
                raise unsupported(f"non-numeric imputer statistics in {block!r}")
            if not keep.all():
                ops.append(("keep", np.flatnonzero(keep)))
                width = int(keep.sum())
            ops.append(("fill", frozen(fill)))
        elif kind is FunctionTransformer:
            # np.log1p itself, as persona.model.preprocess builds it; anything else (another
            # function, keyword arguments, a lambda) is not something we can reproduce
            if step.func is not np.log1p or step.kw_args:
                raise unsupported(f"FunctionTransformer(func={step.func!r}) in {block!r}")
            ops.append(("log1p", None))
        elif kind is StandardScaler:
            if step.with_mean:
                ops.append(("sub", frozen(step.mean_)))
            if step.with_std:
                ops.append(("div", frozen(step.scale_)))
        elif kind is RobustScaler:
            if step.with_centering:
                ops.append(("sub", frozen(step.center_)))
            if step.with_scaling:
                ops.append(("div", frozen(step.scale_)))
        else:
            raise unsupported(f"step {kind.__name__} in transformer {block!r}")
        for op, value in ops[start:]:
            if op in ("sub", "div", "fill") and value.shape != (width,):
                raise unsupported(f"{kind.__name__} fitted on another width in {block!r}")
    if weight is not None and weight != 1.0:
        ops.append(("mul", float(weight)))
    return ops, width


def _categorical_block(
    transformer: Any, columns: list[str], offset: int, block: str
) -> tuple[list[CategoricalColumn], int]:
    """Per kept input column: level -> feature-space column; and the block's output width."""
    steps = _steps(transformer)
    imputer = steps[0] if len(steps) == 2 and type(steps[0]) is SimpleImputer else None
    encoder = steps[-1]
    if type(encoder) is not OneHotEncoder or len(steps) != (2 if imputer else 1):
        names = [type(step).__name__ for step in steps]
        raise unsupported(f"categorical steps {names} in transformer {block!r}")
    if encoder.drop is not None or getattr(encoder, "_infrequent_enabled", False):
        raise unsupported(f"OneHotEncoder with drop/infrequent categories in {block!r}")
    if encoder.handle_unknown not in IGNORE_UNKNOWN:
        raise unsupported(f"OneHotEncoder(handle_unknown={encoder.handle_unknown!r}) in {block!r}")
    if np.dtype(encoder.dtype) != np.float64 or encoder.sparse_output:
        raise unsupported(f"OneHotEncoder with dtype/sparse output in {block!r}")
    if imputer is not None:
        keep, fills = _imputer_keep(imputer, len(columns), block)
    else:
        keep, fills = np.ones(len(columns), dtype=bool), None
    kept = np.flatnonzero(keep)
    if len(encoder.categories_) != len(kept):
        raise unsupported(f"OneHotEncoder fitted on another width in {block!r}")
    compiled, width = [], 0
    for j, (column, levels) in enumerate(zip(kept, encoder.categories_, strict=True)):
        base = offset + width
        # None is missing, like NaN (prepare_features makes it NaN before the imputer sees it)
        lookup = {
            level: base + i
            for i, level in enumerate(levels)
            if level is not None and not _is_nan(level)
        }
        nan_levels = [base + i for i, level in enumerate(levels) if _is_nan(level)]
        if fills is not None:
            fill = fills[j]
            missing = nan_levels[0] if _is_nan(fill) and nan_levels else lookup.get(fill, UNKNOWN)
        else:
            missing = nan_levels[0] if nan_levels else UNKNOWN
        compiled.append(CategoricalColumn(int(column), lookup, missing))
        width += len(levels)
    return compiled, width


def compile_preprocessor(preprocessor: Any) -> Layout:
    if type(preprocessor) is not ColumnTransformer:
        raise unsupported(f"preprocessing step {type(preprocessor).__name__}")
    if getattr(preprocessor, "sparse_output_", False):
        raise unsupported("a ColumnTransformer with sparse output")
    weights = preprocessor.transformer_weights or {}
    numeric: list[str] = []
    categorical: list[str] = []
    numeric_blocks: list[NumericBlock] = []
    numeric_dims: list[np.ndarray] = []
    categorical_columns: list[CategoricalColumn] = []
    dim_weights: list[np.ndarray] = []
    offset = 0
    for name, transformer, columns in preprocessor.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        names = _column_names(columns, name)
        if not names:
            continue
        if isinstance(transformer, str):
            raise unsupported(f"transformer {name!r} = {transformer!r}")
        weight = weights.get(name)
        is_categorical = any(type(step) is OneHotEncoder for step in _steps(transformer))
        if is_categorical:
            if categorical:
                raise unsupported("more than one categorical transformer")
            cols, width = _categorical_block(transformer, names, offset, name)
            categorical_columns, categorical = cols, names
            dim_weights.append(np.full(width, 1.0 if weight is None else float(weight)))
        else:
            ops, width = _numeric_block(transformer, names, weight, name)
            inputs = np.arange(len(numeric), len(numeric) + len(names))
            numeric_blocks.append(NumericBlock(inputs, tuple(ops)))
            numeric += names
            numeric_dims.append(np.arange(offset, offset + width))
            dim_weights.append(np.zeros(width))
        expected = getattr(preprocessor, "output_indices_", {}).get(name)
        if expected is not None and (expected.start, expected.stop) != (offset, offset + width):
            raise unsupported(f"output layout of transformer {name!r}")
        offset += width
    if set(numeric) & set(categorical) or len(set(numeric)) != len(numeric):
        raise unsupported("a column used twice by the preprocessor")
    if offset == 0:
        raise unsupported("a preprocessor without features")
    return Layout(
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        numeric_blocks=tuple(numeric_blocks),
        numeric_dims=np.concatenate(numeric_dims) if numeric_dims else np.empty(0, np.intp),
        categorical_columns=tuple(categorical_columns),
        weights=np.concatenate(dim_weights),
        n_dims=offset,
    )
