"""One small hierarchy so entry points map failures to exit codes and HTTP statuses."""

from __future__ import annotations


class PersonaError(Exception):
    """Base class: an expected failure with a message fit for a user."""

    exit_code = 1


class ConfigurationError(PersonaError):
    """A setting, config file or schema is missing or malformed."""

    exit_code = 2


class InvalidInputError(PersonaError):
    """Input data does not satisfy its contract."""

    exit_code = 3


class DataValidationError(InvalidInputError):
    """Validation found defects; ``report`` keeps every finding for display and storage."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class ModelUnavailableError(PersonaError):
    """No model could be loaded (nothing registered, alias missing, artifact broken)."""

    exit_code = 4


class UpstreamUnavailableError(PersonaError):
    """A service we depend on (MLflow, database, GCS, Telegram) did not answer."""

    exit_code = 5


class PartialWriteError(UpstreamUnavailableError):
    """The database went away during a write committed in parts (a month each): what was
    committed stays, the part being written was rolled back, and a rerun is safe."""

    def __init__(
        self,
        message: str,
        committed: tuple[str, ...] = (),
        committed_rows: int = 0,
        rolled_back: str | None = None,
    ) -> None:
        super().__init__(message)
        self.committed = committed
        self.committed_rows = committed_rows
        self.rolled_back = rolled_back
