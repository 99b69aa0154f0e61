"""Read Kaggle's Otto Group train.csv (or a file of the same schema) into numpy arrays, torch-free.

The schema: an optional `id` column, `feat_1`..`feat_93` (non-negative counts) and `target`
(`Class_1`..`Class_9`), in any column order. The file may be plain (`.csv`), gzip (`.csv.gz`) or a
zip holding exactly one `.csv` (Kaggle's `train.csv.zip`); text is UTF-8, a BOM is allowed, fully
blank lines are skipped. A predictor reads files without `target` with `require_target=False`.

Every problem is one `PipelineError` with a one-line message, `path:line: problem` when a line is
to blame (1-based, the header is line 1; for a zip, the line inside its .csv) and `path: problem`
otherwise, so a user can open the file at the right place.

This module imports only the standard library and numpy, never torch: torch-free code (a deployed
predictor) reads its CSV input with it.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import operator
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handoff.errors import PipelineError, first_line

FEATURES = tuple(f"feat_{i}" for i in range(1, 94))
CLASSES = tuple(f"Class_{i}" for i in range(1, 10))
ID_COLUMN = "id"
TARGET_COLUMN = "target"

FLOAT32_MAX = float(np.finfo(np.float32).max)
CLASS_INDEX = {name: index for index, name in enumerate(CLASSES)}
QUOTE_LIMIT = 20  # characters of a bad value quoted in a message
NAME_LIMIT = 5  # column names listed in a message before "and N more"


@dataclass(frozen=True)
class OttoTable:
    """One Otto file: a row per product, in file order."""

    features: np.ndarray  # float32, N x 93, raw counts in FEATURES order
    labels: np.ndarray | None  # int64 class indices 0..8, None when the file had no target column
    ids: np.ndarray | None  # the id column as strings, None when the file had none


def read_otto_csv(path: str | Path, require_target: bool = True) -> OttoTable:
    """Read and validate an Otto CSV (.csv, .csv.gz or .zip); any problem is a one-line PipelineError.

    `target` must be present when `require_target`; otherwise it is optional, and validated and
    returned when present (a predictor may score a file that has labels).
    """
    text = _decode(path, _unpack(path, _read_bytes(path)))
    rows = _numbered_rows(path, text)
    line, header = next(rows, (0, None))
    if header is None:
        raise PipelineError(f"{path}: empty file, expected a header naming {_schema()}")
    return _read_rows(path, rows, _columns(path, line, header, require_target))


def class_counts(labels: np.ndarray) -> dict[str, int]:
    """How many rows of each class, every class named (zero when absent)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASSES))
    return {name: int(count) for name, count in zip(CLASSES, counts, strict=True)}


# --- bytes and text -------------------------------------------------------------------------


def _read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: not found") from err
    except IsADirectoryError as err:
        raise PipelineError(f"{path}: is a directory, expected a .csv, .csv.gz or .zip file") from err
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror or err})") from err


def _unpack(path: str | Path, data: bytes) -> bytes:
    """The CSV bytes inside `data`, chosen by the file name: .gz is gzip, .zip a one-.csv zip."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; EOFError: truncated
            raise PipelineError(f"{path}: not a valid gzip file ({first_line(err)})") from err
    if name.endswith(".zip"):
        return _unzip(path, data)
    return data


def _unzip(path: str | Path, data: bytes) -> bytes:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as err:  # OSError: e.g. a seek before the start of a truncated file
        raise PipelineError(f"{path}: not a valid zip file ({first_line(err)})") from err
    with archive:
        # macOS's Finder adds __MACOSX/ resource forks beside the real file; they are not data
        files = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
        members = [i for i in files if i.filename.lower().endswith(".csv")]
        if not members:
            held = f"it holds {_names([i.filename for i in files], quote=True)}" if files else "it is empty"
            raise PipelineError(f"{path}: no .csv file inside ({held})")
        if len(members) > 1:
            names = _names([i.filename for i in members], quote=True)
            raise PipelineError(f"{path}: {len(members)} .csv files inside ({names}); expected exactly one")
        try:
            return archive.read(members[0])
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as err:
            # CRC mismatch, truncated or corrupt data, unsupported compression, encryption
            member = _quote(members[0].filename, 60)
            raise PipelineError(f"{path}: cannot extract {member} ({first_line(err)})") from err


def _decode(path: str | Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # -sig: drops the BOM that Excel writes
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        hint = " (is it compressed? name it .csv.gz or .zip)" if data[:2] in (b"\x1f\x8b", b"PK") else ""
        raise PipelineError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}){hint}") from err


def _numbered_rows(path: str | Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each CSV row that is not blank; a csv.Error is a PipelineError."""
    reader = csv.reader(io.StringIO(text, newline=""))  # newline="": the csv module handles \r\n itself
    try:
        for row in reader:
            if row and (len(row) > 1 or row[0].strip()):
                yield reader.line_num, row  # line_num: the row's last line, if a quoted field spans lines
    except csv.Error as err:
        reason = " ".join(str(err).split())  # csv.Error messages are plain sentences; keep them on one line
        raise PipelineError(f"{path}:{reader.line_num}: malformed CSV: {reason}") from err


# --- header ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Columns:
    """Where each column of the schema is in a row of this file."""

    width: int  # fields per row
    features: list[int]  # in FEATURES order
    target: int | None
    id: int | None


def _columns(path: str | Path, line: int, header: list[str], require_target: bool) -> _Columns:
    names = [name.strip() for name in header]
    where = f"{path}:{line}"
    if not set(FEATURES) & set(names):  # not one feature named: most likely no header line at all
        raise PipelineError(f"{where}: no Otto header; the first line must name the columns {_schema()}")
    duplicates = [name for name, count in Counter(names).items() if count > 1]
    if duplicates:
        plural = "s" if len(duplicates) > 1 else ""
        raise PipelineError(f"{where}: duplicate column{plural} {_names(duplicates, quote=True)} in the header")
    required = [*FEATURES, TARGET_COLUMN] if require_target else list(FEATURES)
    missing = [name for name in required if name not in names]
    known = {ID_COLUMN, TARGET_COLUMN, *FEATURES}
    unknown = [name for name in names if name not in known]
    problems = []
    if missing:
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {_names(missing)}")
    if unknown:
        problems.append(f"unknown column{'s' if len(unknown) > 1 else ''} {_names(unknown, quote=True)}")
    if problems:
        raise PipelineError(f"{where}: {'; '.join(problems)} (expected {_schema()})")
    position = {name: index for index, name in enumerate(names)}
    return _Columns(len(names), [position[f] for f in FEATURES], position.get(TARGET_COLUMN), position.get(ID_COLUMN))


def _schema() -> str:
    return f"{ID_COLUMN} (optional), {FEATURES[0]}..{FEATURES[-1]}, {TARGET_COLUMN}"


# --- rows -----------------------------------------------------------------------------------


class _BadCell(ValueError):
    """A feature cell that is not a finite, non-negative number; the message says which."""


class _Numbers(dict):
    """Cell text -> float, each distinct text converted and checked once.

    Counts repeat a lot (most cells are "0".."5"), so a lookup is much faster than converting
    61,878 x 93 cells one by one, and it checks as it goes, so the first bad cell in file order is
    the one reported.
    """

    def __missing__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _BadCell("is empty" if not text.strip() else f"is not a number: {_quote(text)}") from None
        if math.isnan(value) or abs(value) > FLOAT32_MAX:  # inf, or a value float32 turns into inf
            raise _BadCell(f"is not a finite number: {_quote(text)}")
        if value < 0:
            raise _BadCell(f"is negative: {_quote(text)}; counts must be >= 0")
        self[text] = value
        return value


def _read_rows(path: str | Path, rows: Iterator[tuple[int, list[str]]], columns: _Columns) -> OttoTable:
    numbers = _Numbers()
    to_number = numbers.__getitem__
    pick_features = operator.itemgetter(*columns.features)
    values: list[float] = []
    labels: list[int] = []
    ids: list[str] = []
    for line, row in rows:
        if len(row) != columns.width:
            raise PipelineError(f"{path}:{line}: {len(row)} fields, expected {columns.width}")
        cells = pick_features(row)
        try:
            values.extend(map(to_number, cells))
        except _BadCell as err:
            raise PipelineError(f"{path}:{line}: {_bad_feature(cells, numbers)} {err}") from None
        if columns.target is not None:
            labels.append(_label(path, line, row[columns.target]))
        if columns.id is not None:
            ids.append(row[columns.id].strip())
    if not values:
        raise PipelineError(f"{path}: no data rows after the header")
    return OttoTable(
        features=np.array(values, dtype=np.float32).reshape(-1, len(FEATURES)),
        labels=np.array(labels, dtype=np.int64) if columns.target is not None else None,
        ids=np.array(ids, dtype=np.str_) if columns.id is not None else None,
    )


def _bad_feature(cells: tuple[str, ...], numbers: _Numbers) -> str:
    """The name of the first feature in `cells` whose text did not convert (cells convert in order)."""
    return next(name for name, text in zip(FEATURES, cells, strict=True) if text not in numbers)


def _label(path: str | Path, line: int, text: str) -> int:
    index = CLASS_INDEX.get(text)
    if index is not None:
        return index
    name = text.strip()
    if not name:
        raise PipelineError(f"{path}:{line}: empty {TARGET_COLUMN}, expected {CLASSES[0]}..{CLASSES[-1]}")
    if name not in CLASS_INDEX:
        raise PipelineError(f"{path}:{line}: unknown class {_quote(name)}, expected {CLASSES[0]}..{CLASSES[-1]}")
    return CLASS_INDEX[name]


# --- message pieces -------------------------------------------------------------------------


def _quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` quoted for a one-line message: cut to `limit` characters, control characters escaped."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _names(names: list[str], quote: bool = False) -> str:
    """Up to NAME_LIMIT names (quoted: they come from the file), then "and N more"."""
    shown = [_quote(name, 60) if quote else name for name in names[:NAME_LIMIT]]
    more = f" and {len(names) - NAME_LIMIT} more" if len(names) > NAME_LIMIT else ""
    return ", ".join(shown) + more
