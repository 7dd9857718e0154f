"""Customer files in and out: CSV in any common dialect, Excel and Parquet, chosen by suffix.

Real exports arrive with `;`, tab or `|` delimiters, quoted fields, a UTF-8 BOM or a Windows
code page. The dialect is sniffed with clevercsv (its data-consistency measure beats the
standard library's ``csv.Sniffer`` on messy files) and the encoding with charset-normalizer
(maintained, already in every lock), each on a bounded sample of the file, and the whole file is
then parsed by pandas' C engine with what was found; ``delimiter=`` / ``encoding=`` overrides
win. What was used comes back as a ``FileDialect`` so a person can see how the file was read.
"""

from __future__ import annotations

import codecs
import logging
import math
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from persona.errors import ConfigurationError, InvalidInputError

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
EXCEL_SUFFIXES = (".xlsx",)
PARQUET_SUFFIXES = (".parquet", ".pq")
READ_SUFFIXES = (*TEXT_SUFFIXES, *EXCEL_SUFFIXES, *PARQUET_SUFFIXES)
WRITE_SUFFIXES = (".csv", *PARQUET_SUFFIXES)

SAMPLE_BYTES = 64 * 1024  # the encoding is guessed from this much of the file
DIALECT_SAMPLE_CHARS = 32 * 1024  # the delimiter from this much text (clevercsv is ~O(n))
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}
# Never guessed, only given: DOS and Mac code pages (nothing exports customer files in them
# today, yet on short samples of accented names they out-score cp1252, e.g. cp775 for
# "São Paulo"), and UTF-16/32 without a byte order mark (a few odd bytes pass for them).
_NOT_GUESSED = [
    *("utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be", "utf_7"),
    *(f"cp{n}" for n in (437, 737, 775, 850, 852, 855, 856, 857, 858, 860, 861, 862, 863, 864)),
    *(f"cp{n}" for n in (865, 866, 869, 875, 1006, 1125)),
    *("mac_cyrillic", "mac_greek", "mac_iceland", "mac_latin2", "mac_roman", "mac_turkish"),
]
CHAOS_TOLERANCE = 0.05  # mess ratios this close count as equally clean (see _guess_code_page)
# Code page of Excel's "CSV" export on Western Windows: wins ties between equally plausible ones.
_PREFERRED_CODE_PAGE = "cp1252"
_BOMS = (  # longest first: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
SHOWN_COLUMNS = 8


@dataclass(frozen=True)
class FileDialect:
    """How a file was read: its format and, for text files, delimiter, quoting and encoding.

    ``delimiter_from`` / ``encoding_from`` say whether a value was detected or given.
    """

    format: str  # csv | xlsx | parquet
    delimiter: str | None = None
    quotechar: str | None = None
    encoding: str | None = None
    bom: bool = False
    delimiter_from: str | None = None  # detected | given | default
    encoding_from: str | None = None  # detected | given | byte order mark
    sheet: str | None = None  # xlsx: the worksheet read (the first one)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def describe(self) -> str:
        """One line for logs and error messages, e.g. ``csv, delimiter ';' (detected), ...``."""
        if self.format != "csv":
            return self.format + (f", sheet {self.sheet!r}" if self.sheet else "")
        return (
            f"csv, delimiter {self.delimiter!r} ({self.delimiter_from}), "
            f"quote {self.quotechar!r}, encoding {self.encoding!r} ({self.encoding_from})"
        )


def parse_delimiter(text: str | None) -> str | None:
    """A delimiter option as typed: one character, or a name (tab, ``\\t``, semicolon, ...)."""
    if text is None or text == "":
        return None
    value = DELIMITER_NAMES.get(text.lower(), text)
    if len(value) != 1 or value in "\r\n\"'":
        raise ConfigurationError(
            f"delimiter must be one character (or tab/comma/semicolon/pipe), got {text!r}"
        )
    return value


def parse_encoding(text: str | None) -> str | None:
    """An encoding option as typed, by its canonical Python name (``latin-1`` -> iso8859-1)."""
    if text is None or text == "":
        return None
    try:
        return codecs.lookup(text).name
    except LookupError:
        raise ConfigurationError(
            f"unknown encoding {text!r}; e.g. utf-8, utf-8-sig, cp1252, latin-1"
        ) from None


def checked_suffix(path: Path, allowed: tuple[str, ...]) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise InvalidInputError(f"{path}: unsupported file type {suffix!r}; use one of {allowed}")
    return suffix


def _read_sample(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(SAMPLE_BYTES)


def _bom_encoding(raw: bytes) -> str | None:
    return next((name for bom, name in _BOMS if raw.startswith(bom)), None)


def _decodes_as_utf8(raw: bytes) -> bool:
    """Strict UTF-8, tolerating a character cut in two by the end of the sample."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _guess_code_page(raw: bytes) -> str:
    """charset-normalizer's guess, read for short tabular text.

    Among the candidates nearly as clean as the cleanest (mess ratio within
    ``CHAOS_TOLERANCE``), the one whose text reads most like a language wins: on a few accented
    names the cleanest alone is often an unrelated code page (cp1256 for "Müller;José").
    Ties go to cp1252, the code page of Excel's CSV export on Western Windows.
    """
    from charset_normalizer import from_bytes

    matches = list(from_bytes(raw, cp_exclusion=_NOT_GUESSED))
    if not matches:
        return _PREFERRED_CODE_PAGE  # decodes nearly any byte; the parse will say if not
    cleanest = min(match.chaos for match in matches)
    close = [match for match in matches if match.chaos <= cleanest + CHAOS_TOLERANCE]
    coherence = max(match.coherence for match in close)
    ties = [match for match in close if math.isclose(match.coherence, coherence)]
    if any(_PREFERRED_CODE_PAGE in match.could_be_from_charset for match in ties):
        return _PREFERRED_CODE_PAGE
    return codecs.lookup(ties[0].encoding).name


def detect_encoding(raw: bytes) -> tuple[str, bool]:
    """(encoding, has BOM) of a file's first bytes: a BOM, else UTF-8 if it decodes, else a
    code page (charset-normalizer)."""
    bom = _bom_encoding(raw)
    if bom:
        return bom, True
    if _decodes_as_utf8(raw):
        return "utf-8", False
    return _guess_code_page(raw), False


def _decode_sample(raw: bytes, encoding: str) -> str:
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(raw, final=False)
    return text.lstrip("\ufeff")


def _whole_lines(text: str, limit: int, complete: bool) -> str:
    """At most ``limit`` characters, cut after a line end unless the sample is the whole file."""
    if complete and len(text) <= limit:
        return text
    cut = text[:limit]
    end = cut.rfind("\n")
    return cut[: end + 1] if end > 0 else cut


def sniff_delimiter(text: str) -> tuple[str | None, str | None, str | None]:
    """(delimiter, quotechar, escapechar) of a text sample, each None when clevercsv saw none."""
    from clevercsv.detect import Detector

    found = Detector().detect(text, delimiters=list(DELIMITERS))
    if found is None:
        return None, None, None
    return found.delimiter or None, found.quotechar or None, found.escapechar or None


def _first_line(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= 200 else line[:200] + "..."


def _shown(columns: Collection[Any]) -> str:
    names = [str(c) for c in columns]
    shown = ", ".join(repr(name) for name in names[:SHOWN_COLUMNS])
    if len(names) > SHOWN_COLUMNS:
        shown += f", ... ({len(names)} in all)"
    return f"[{shown}]"


def read_table_with_dialect(
    path: Path,
    id_column: str | None = None,
    *,
    text_columns: Collection[str] = (),
    expected_columns: Collection[str] = (),
    delimiter: str | None = None,
    encoding: str | None = None,
) -> tuple[pd.DataFrame, FileDialect]:
    """Read a CSV/TSV/TXT, XLSX or Parquet file and say how it was read.

    ``id_column`` is kept as text (leading zeros survive); ``text_columns`` (categoricals,
    dates) become text whatever their cells looked like, so "1" and 1 are the same level
    everywhere. When ``expected_columns`` are given and none is in the file, or a text file
    parses into a single column, the error shows what was detected and suggests a delimiter.
    """
    path = Path(path)
    suffix = checked_suffix(path, READ_SUFFIXES)
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found")
    delimiter, encoding = parse_delimiter(delimiter), parse_encoding(encoding)
    if suffix in TEXT_SUFFIXES:
        frame, dialect, sample = _read_text(path, id_column, delimiter, encoding)
    else:
        sample = ""
        frame, dialect = _read_binary(path, suffix, id_column)
    frame.columns = [str(c) for c in frame.columns]
    check_read_columns(path, list(frame.columns), dialect, sample, expected_columns)
    for name in text_columns:
        if name in frame.columns:
            frame[name] = as_text(frame[name])
    logger.info("read %s: %d rows x %d columns (%s)", path, *frame.shape, dialect.describe())
    return frame, dialect


def read_table(
    path: Path,
    id_column: str | None = None,
    *,
    text_columns: Collection[str] = (),
    expected_columns: Collection[str] = (),
    delimiter: str | None = None,
    encoding: str | None = None,
) -> pd.DataFrame:
    """``read_table_with_dialect`` for callers that only need the rows."""
    frame, _ = read_table_with_dialect(
        path,
        id_column,
        text_columns=text_columns,
        expected_columns=expected_columns,
        delimiter=delimiter,
        encoding=encoding,
    )
    return frame


def as_text(series: pd.Series) -> pd.Series:
    """Values as text, missing kept missing; whole floats lose ``.0`` (1.0 and 1 are "1").

    Date-times stay date-times: they are dates already, not text to parse.
    """
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in {
        "string",
        "empty",
    }:
        return series  # already text: the common case, no pass in Python

    def text(value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    # One conversion per distinct value: categorical columns have few.
    return series.map({value: text(value) for value in series.dropna().unique()}).astype(object)


def detect_text_dialect(
    path: Path, delimiter: str | None = None, encoding: str | None = None
) -> tuple[FileDialect, str | None, str]:
    """How a text file is to be read (``delimiter``/``encoding`` win over what is detected):
    its dialect, the escape character clevercsv saw, and the decoded sample it looked at."""
    raw = _read_sample(path)
    bom_encoding = _bom_encoding(raw)
    if encoding:
        encoding_from = "given"
        if bom_encoding == "utf-8-sig" and encoding == "utf-8":
            encoding = bom_encoding  # else the header's first name starts with "\ufeff"
    else:
        encoding, _ = detect_encoding(raw)
        encoding_from = "byte order mark" if bom_encoding else "detected"
    complete = len(raw) < SAMPLE_BYTES
    sample = _decode_sample(raw, encoding)
    sniffed, quotechar, escapechar = sniff_delimiter(
        _whole_lines(sample, DIALECT_SAMPLE_CHARS, complete)
    )
    delimiter_from = "given" if delimiter else "detected" if sniffed else "default"
    dialect = FileDialect(
        format="csv",
        delimiter=delimiter or sniffed or ",",
        quotechar=quotechar or '"',  # RFC 4180 quoting unless the file shows another
        encoding=encoding,
        bom=bom_encoding is not None,
        delimiter_from=delimiter_from,
        encoding_from=encoding_from,
    )
    return dialect, escapechar, sample


def _read_text(
    path: Path, id_column: str | None, delimiter: str | None, encoding: str | None
) -> tuple[pd.DataFrame, FileDialect, str]:
    dialect, escapechar, sample = detect_text_dialect(path, delimiter, encoding)
    try:
        frame = _parse_csv(path, dialect, id_column, escapechar, sample)
    except UnicodeDecodeError as exc:
        if dialect.encoding_from != "detected" or dialect.encoding != "utf-8":
            raise undecodable(path, dialect, exc) from None
        # The sample was UTF-8, a later part is not: guess again from the bytes around it.
        encoding = _code_page_of_later_bytes(path)
        logger.warning(
            "%s: not UTF-8 after the first %d KiB; reading it as %s",
            path,
            SAMPLE_BYTES // 1024,
            encoding,
        )
        dialect = FileDialect(**{**asdict(dialect), "encoding": encoding})
        try:
            frame = _parse_csv(path, dialect, id_column, escapechar, sample)
        except UnicodeDecodeError as again:
            raise undecodable(path, dialect, again) from None
    return frame, dialect, sample


def undecodable(path: Path, dialect: FileDialect, exc: UnicodeDecodeError) -> InvalidInputError:
    return InvalidInputError(
        f"{path}: cannot decode as {dialect.encoding!r} ({dialect.encoding_from}): "
        f"{exc.reason}; name the file's encoding with --encoding (e.g. utf-8, cp1252, latin-1)"
    )


def _code_page_of_later_bytes(path: Path) -> str:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = max(0, exc.start - SAMPLE_BYTES // 2)
        return _guess_code_page(data[start : start + SAMPLE_BYTES])
    return "utf-8"


def csv_options(dialect: FileDialect, escapechar: str | None) -> dict[str, Any]:
    """``pandas.read_csv`` arguments that read a file of this dialect (C engine)."""
    return {
        "sep": dialect.delimiter,
        "quotechar": dialect.quotechar,
        "escapechar": escapechar,
        "encoding": dialect.encoding,
        "engine": "c",
    }


def _parse_csv(
    path: Path, dialect: FileDialect, id_column: str | None, escapechar: str | None, sample: str
) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path, dtype={id_column: str} if id_column else None, **csv_options(dialect, escapechar)
        )
    except UnicodeDecodeError:
        raise  # a ValueError too, but the caller may retry with another encoding
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise InvalidInputError(
            f"{path}: cannot parse as {dialect.describe()}: {str(exc).strip()}\n  "
            f"first line: {_first_line(sample)!r}\n  {_delimiter_hint(dialect, sample)}"
        ) from None


def _read_binary(
    path: Path, suffix: str, id_column: str | None
) -> tuple[pd.DataFrame, FileDialect]:
    try:
        if suffix in EXCEL_SUFFIXES:
            with pd.ExcelFile(path, engine="openpyxl") as workbook:
                sheet = str(workbook.sheet_names[0])
                if len(workbook.sheet_names) > 1:
                    logger.info(
                        "%s: reading the first of %d sheets, %r",
                        path,
                        len(workbook.sheet_names),
                        sheet,
                    )
                frame = workbook.parse(sheet, dtype={id_column: str} if id_column else None)
            dialect = FileDialect(format="xlsx", sheet=sheet)
        else:
            frame = pd.read_parquet(path)
            dialect = FileDialect(format="parquet")
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:  # pyarrow's are ValueError
        raise InvalidInputError(f"{path}: cannot read as {suffix[1:]}: {exc}") from None
    if id_column in frame.columns and pd.api.types.is_integer_dtype(frame[id_column]):
        frame[id_column] = frame[id_column].astype(str)  # ids are text, as from a CSV
    return frame, dialect


def _delimiter_hint(dialect: FileDialect, sample: str) -> str:
    """What to try when a text file parsed badly: the sniffed delimiter when one was given."""
    if dialect.delimiter_from == "given":
        sniffed, _, _ = sniff_delimiter(_whole_lines(sample, DIALECT_SAMPLE_CHARS, False))
        if sniffed and sniffed != dialect.delimiter:
            return (
                f"the file looks {sniffed!r}-delimited: try --delimiter {sniffed!r}, "
                "or leave --delimiter out to detect it"
            )
    return "if the delimiter is wrong, name it, e.g. --delimiter ';' (or tab, '|', ',')"


def check_read_columns(
    path: Path,
    columns: Sequence[str],
    dialect: FileDialect,
    sample: str,
    expected: Collection[str],
) -> None:
    """Stop on a file whose columns show it was read wrongly, saying how it was read."""
    one_column = dialect.format == "csv" and len(columns) == 1
    none_expected = bool(expected) and not set(expected) & set(columns)
    if not (one_column or none_expected):
        return
    problem = (
        "parsing gave a single column"
        if one_column
        else f"none of the expected columns {_shown(expected)} is in the file"
    )
    lines = [f"{path}: {problem}.", f"read as: {dialect.describe()}"]
    if dialect.format == "csv":
        lines.append(f"first line: {_first_line(sample)!r}")
    lines.append(f"columns found ({len(columns)}): {_shown(columns)}")
    if dialect.format == "csv" and len(columns) <= 2:
        lines.append(_delimiter_hint(dialect, sample))
    if none_expected and not one_column:
        lines.append(
            "if the columns are named differently, write a schema for this file "
            "(persona data infer-schema FILE --out SCHEMA.yaml) and pass --schema"
        )
    raise InvalidInputError("\n  ".join(lines))


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    path = Path(path)
    suffix = checked_suffix(path, WRITE_SUFFIXES)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path
