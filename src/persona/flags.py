"""Yes/no values: the one parser for boolean settings and boolean run variables.

An environment variable (``PERSONA_SCORING_LOG``) and a run variable (``retrain``) accept the
same words; anything else fails naming the variable and the accepted words, so a typo such as
``ture`` is refused instead of silently meaning one of the two.
"""

from __future__ import annotations

from typing import overload

from persona.errors import ConfigurationError

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
ACCEPTED = ", ".join(word for pair in zip(TRUE_WORDS, FALSE_WORDS, strict=True) for word in pair)


@overload
def parse_bool(value: object, name: str, default: bool) -> bool: ...
@overload
def parse_bool(value: object, name: str, default: None = None) -> bool | None: ...
def parse_bool(value: object, name: str, default: bool | None = None) -> bool | None:
    """``value`` as a bool: a bool as is, text by its word (any case, outer spaces ignored).

    ``None`` or blank text gives ``default``. ``name`` is how the error names the variable,
    e.g. ``PERSONA_SCORING_LOG`` or ``run variable 'retrain'``.
    """
    if isinstance(value, bool):
        return value
    if value is None:
        return default
    word = str(value).strip().lower()
    if word == "":
        return default
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigurationError(f"{name} must be true or false (one of {ACCEPTED}), got {value!r}")
