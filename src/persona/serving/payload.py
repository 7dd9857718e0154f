"""The scoring API's request side: which parser a body goes to, and which answer type is wanted.

JSON, CSV and the Arrow formats (an Arrow IPC stream, Parquet) have a module each
(``payload_json``, ``payload_csv``, ``payload_arrow``) over the checks they share (``columns``).
pyarrow is imported only when an Arrow or Parquet body or answer comes. Nothing is silently dropped or coerced: a malformed request is a
:class:`PayloadError`, and a value of the wrong type is a ``RowProblem`` of the batch (the API
refuses the batch or flags those rows, as the client asked).
"""

from __future__ import annotations

from persona.serving.contract import Batch, InputSpec
from persona.serving.payload_csv import parse_csv
from persona.serving.payload_json import parse_json
from persona.serving.problems import detail, fail

JSON = "application/json"
CSV = "text/csv"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
X_PARQUET = "application/x-parquet"
BINARY = (ARROW_STREAM, PARQUET, X_PARQUET)
# Answer types in order of preference when the client likes several equally.
OFFERS = (JSON, CSV, ARROW_STREAM, PARQUET, X_PARQUET)
_ACCEPTED = "application/json or text/csv (charset utf-8 if given), " + ", ".join(BINARY)
_UTF8 = frozenset({"utf-8", "utf8"})


def _media_type(header: str) -> tuple[str, dict[str, str]]:
    media, *params = header.split(";")
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip().lower()] = value.strip().strip('"').lower()
    return media.strip().lower(), parsed


def parse_request(body: bytes, content_type: str | None, spec: InputSpec) -> Batch:
    """Dispatch on Content-Type; anything but UTF-8 JSON or CSV, Arrow or Parquet is a 415."""
    media, params = _media_type(content_type or "")
    charset = params.get("charset")
    if media in (JSON, CSV) and (charset is None or charset in _UTF8):
        return parse_json(body, spec) if media == JSON else parse_csv(body, spec)
    if media in BINARY:
        from persona.serving.payload_arrow import PARSERS

        return PARSERS[media](body, spec)
    got = content_type if content_type else "no Content-Type"
    found = detail("unsupported_media_type", "Content-Type", (), 0, _ACCEPTED, got)
    raise fail("unsupported_media_type", "unsupported request body type", [found], 415)


def negotiate(accept: str | None) -> str:
    """The response type for an Accept header: JSON unless another offer is preferred; else 406."""
    if accept is None or not accept.strip():
        return JSON
    ranges = []
    for part in accept.split(","):
        media, params = _media_type(part)
        if not media:
            continue
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            continue
        ranges.append((media, min(max(q, 0.0), 1.0)))
    best: tuple[float, int, int] | None = None
    choice = None
    for preference, offer in enumerate(OFFERS):
        kind = offer.split("/")[0]
        matches = [
            (3 if media == offer else 2 if media == f"{kind}/*" else 1, q)
            for media, q in ranges
            if media in (offer, f"{kind}/*", "*/*")
        ]
        if not matches:
            continue
        specificity, q = max(matches)  # the most specific range decides an offer's quality
        rank = (q, specificity, -preference)
        if q > 0 and (best is None or rank > best):
            best, choice = rank, offer
    if choice is None:
        found = detail("not_acceptable", "Accept", (), 0, ", ".join(OFFERS), accept)
        raise fail("not_acceptable", "no acceptable response type", [found], 406)
    return choice
