"""Otto CSV reading (`handoff.otto_csv`) and the synthetic train.csv (`otto_synthetic`).

Speed is measured, not asserted (no test may depend on the machine): on the 2-core dev machine,
with a benchmark running beside it, read_otto_csv loads a 61,878-row synthetic train.csv
(12.4 MB) in 0.5-0.75 s, and the same rows as .csv.gz (1.6 MB) or .zip (1.6 MB) in 0.5-0.8 s.
"""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from handoff.errors import PipelineError
from handoff.otto_csv import (
    CLASSES,
    FEATURES,
    ID_COLUMN,
    TARGET_COLUMN,
    OttoTable,
    class_counts,
    read_otto_csv,
)
from pipeline.datasets.otto_synthetic import REAL_COUNTS, class_sizes, main, synthetic_otto, write_synthetic_otto

REPO = Path(__file__).resolve().parents[1]
ROWS = 2000  # small enough to be quick, large enough for proportions and sparsity to be meaningful
CONTAINERS = ("train.csv", "train.csv.gz", "train.csv.zip")
HEADER = [ID_COLUMN, *FEATURES, TARGET_COLUMN]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict[str, Path]:
    """The same synthetic file (ROWS rows, seed 0) in each container, by file name."""
    folder = tmp_path_factory.mktemp("otto")
    return {name: write_synthetic_otto(folder / name, rows=ROWS, seed=0) for name in CONTAINERS}


# --- the synthetic file round-trips ---------------------------------------------------------


def test_every_container_reads_to_the_generated_arrays(synthetic):
    counts, labels = synthetic_otto(ROWS, seed=0)
    for path in synthetic.values():
        table = read_otto_csv(path)
        assert np.array_equal(table.features, counts.astype(np.float32)), path
        assert np.array_equal(table.labels, labels), path
        assert table.ids.tolist() == [str(i) for i in range(1, ROWS + 1)], path


def test_shapes_dtypes_and_labels(synthetic):
    table = read_otto_csv(synthetic["train.csv"])
    assert table.features.shape == (ROWS, 93) and table.features.dtype == np.float32
    assert table.labels.shape == (ROWS,) and table.labels.dtype == np.int64
    assert table.labels.min() == 0 and table.labels.max() == 8
    assert np.all(np.diff(table.labels) >= 0), "rows are sorted by class, like Kaggle's train.csv"


def test_class_proportions_are_otto_s(synthetic):
    counts = class_counts(read_otto_csv(synthetic["train.csv.zip"]).labels)
    assert list(counts) == list(CLASSES)
    real = np.array(REAL_COUNTS) / sum(REAL_COUNTS)
    assert np.allclose(np.array(list(counts.values())) / ROWS, real, atol=1 / ROWS)
    assert class_sizes(61878).tolist() == list(REAL_COUNTS)


@pytest.mark.parametrize("rows", [9, 10, 20, 100, 2000, 6000, 61879])
def test_class_sizes_sum_to_rows_with_every_class_present(rows):
    sizes = class_sizes(rows)
    assert sizes.sum() == rows and sizes.min() >= 1


def test_counts_are_sparse_with_a_heavy_tail(synthetic):
    features = read_otto_csv(synthetic["train.csv.gz"]).features
    assert 0.75 <= np.mean(features == 0) <= 0.85  # real Otto: about 80% zeros
    nonzero = features[features > 0]
    assert np.mean(nonzero <= 5) > 0.8  # most non-zero counts are small...
    assert features.max() >= 50  # ...but a few are large
    assert np.array_equal(features, np.round(features))


def test_same_seed_same_bytes_other_seed_different(tmp_path, synthetic):
    for name in CONTAINERS:
        again = write_synthetic_otto(tmp_path / "again" / name, rows=ROWS, seed=0)
        other = write_synthetic_otto(tmp_path / "other" / name, rows=ROWS, seed=1)
        assert again.read_bytes() == synthetic[name].read_bytes(), name
        assert other.read_bytes() != synthetic[name].read_bytes(), name


def test_zip_holds_one_member_named_after_the_file(tmp_path):
    assert main([str(tmp_path / "train.csv.zip"), "--rows", "30"]) == 0
    assert main([str(tmp_path / "otto.zip"), "--rows", "30"]) == 0
    assert zipfile.ZipFile(tmp_path / "train.csv.zip").namelist() == ["train.csv"]
    assert zipfile.ZipFile(tmp_path / "otto.zip").namelist() == ["otto.csv"]
    assert read_otto_csv(tmp_path / "otto.zip").features.shape == (30, 93)


def test_generator_rejects_unknown_suffix_and_too_few_rows(tmp_path, capsys):
    assert main([str(tmp_path / "train.txt")]) == 2
    expected = f"{tmp_path / 'train.txt'}: unsupported file name; it must end in .csv, .csv.gz, .zip"
    assert capsys.readouterr().err == f"error: {expected}\n"
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "train.csv"), "--rows", "8"])
    assert exit_info.value.code == 2 and "need at least 9 rows" in capsys.readouterr().err


# --- optional and reordered columns ---------------------------------------------------------


def _cells(rows: int = 5) -> list[list[str]]:
    """A small valid file as rows of cells: the header, then `rows` rows of varied counts."""
    body = [
        [str(i), *(str((i * (j + 1)) % 4) for j in range(len(FEATURES))), CLASSES[i % len(CLASSES)]]
        for i in range(1, rows + 1)
    ]
    return [list(HEADER), *body]


def _csv(rows: list[list[str]]) -> bytes:
    return "".join(",".join(row) + "\n" for row in rows).encode()


def _columns(rows: list[list[str]], names: list[str]) -> list[list[str]]:
    """`rows` keeping only the columns `names`, in that order."""
    return [[row[HEADER.index(name)] for name in names] for row in rows]


def test_id_is_optional(tmp_path):
    path = tmp_path / "no-id.csv"
    path.write_bytes(_csv(_columns(_cells(), HEADER[1:])))
    table, full = read_otto_csv(path), _table(tmp_path, _cells())
    assert table.ids is None
    assert np.array_equal(table.features, full.features) and np.array_equal(table.labels, full.labels)


def test_columns_in_another_order_read_the_same(tmp_path):
    shuffled = [HEADER[i] for i in np.random.default_rng(0).permutation(len(HEADER))]
    path = tmp_path / "shuffled.csv"
    path.write_bytes(_csv(_columns(_cells(), shuffled)))
    table, full = read_otto_csv(path), _table(tmp_path, _cells())
    for got, expected in zip((table.features, table.labels, table.ids), (full.features, full.labels, full.ids)):
        assert np.array_equal(got, expected)


def test_target_is_optional_only_when_not_required(tmp_path):
    path = tmp_path / "test.csv"
    path.write_bytes(_csv(_columns(_cells(), HEADER[:-1])))
    table = read_otto_csv(path, require_target=False)
    assert table.labels is None and table.features.shape == (5, 93)
    with pytest.raises(PipelineError) as error:
        read_otto_csv(path)
    assert str(error.value) == f"{path}:1: missing column target (expected id (optional), feat_1..feat_93, target)"


def test_a_target_present_but_not_required_is_read_and_checked(tmp_path):
    assert read_otto_csv(_write(tmp_path, _cells()), require_target=False).labels.tolist() == [1, 2, 3, 4, 5]
    bad = _cells()
    bad[2][-1] = "Class_0"
    with pytest.raises(PipelineError, match=r":3: unknown class 'Class_0'"):
        read_otto_csv(_write(tmp_path, bad), require_target=False)


def test_bom_crlf_and_blank_lines_are_accepted_and_blank_lines_still_count(tmp_path):
    def windows(rows: list[list[str]]) -> bytes:
        lines = [",".join(row) for row in rows]
        lines[3:3] = ["", "   "]  # lines 4 and 5 are blank: the last three rows are on lines 6, 7, 8
        return ("\ufeff" + "\r\n".join(lines) + "\r\n\r\n").encode()

    rows = _cells()
    path = tmp_path / "windows.csv"
    path.write_bytes(windows(rows))
    assert np.array_equal(read_otto_csv(path).features, _table(tmp_path, rows).features)
    rows[4][-1] = "Class_X"
    path.write_bytes(windows(rows))
    with pytest.raises(PipelineError, match=r":7: unknown class 'Class_X'"):
        read_otto_csv(path)


def test_zip_ignores_folders_and_macos_resource_forks(tmp_path):
    path = tmp_path / "train.csv.zip"
    path.write_bytes(_zip({"data/": b"", "data/train.csv": _csv(_cells()), "__MACOSX/data/._train.csv": b"\0\5"}))
    assert read_otto_csv(path).features.shape == (5, 93)


def _write(tmp_path: Path, rows: list[list[str]], name: str = "rows.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(_csv(rows))
    return path


def _table(tmp_path: Path, rows: list[list[str]]) -> OttoTable:
    return read_otto_csv(_write(tmp_path, rows, "reference.csv"))


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --- one-line errors ------------------------------------------------------------------------


def _change(line: int, column: str, value: str) -> bytes:
    """The valid file with one cell replaced: `line` is 1-based, the header is line 1."""
    rows = _cells()
    rows[line - 1][HEADER.index(column)] = value
    return _csv(rows)


def _header(names: list[str]) -> bytes:
    """The valid rows under another header (fields per row adjusted to the header's width)."""
    return _csv([names, *(row[: len(names)] + ["0"] * (len(names) - len(row)) for row in _cells()[1:])])


MISSING_SIX = [name for name in HEADER if name not in FEATURES[-6:]]
SCHEMA = "id (optional), feat_1..feat_93, target"
EXPECTED = f"(expected {SCHEMA})"
VALID_GZIP = gzip.compress(_csv(_cells()))
VALID_ZIP = _zip({"train.csv": _csv(_cells())})  # stored, not deflated: its data starts after a 39-byte header
CORRUPT_ZIP = VALID_ZIP[:50] + bytes([VALID_ZIP[50] ^ 1]) + VALID_ZIP[51:]  # one bit flipped in the data

# (file name; content: bytes, or "missing" / "folder" / "under-a-file"; line or None; the message after
# `path:line: ` or `path: `, a regex)
MALFORMED = {
    "not-found": ("train.csv", "missing", None, re.escape("not found")),
    "a-folder": ("train.csv", "folder", None, re.escape("is a directory, expected a .csv, .csv.gz or .zip file")),
    "unreadable": ("train.csv", "under-a-file", None, re.escape("cannot read (Not a directory)")),
    "not-gzip": ("train.csv.gz", _csv(_cells()), None, r"not a valid gzip file \(BadGzipFile: .+\)"),
    "truncated-gzip": ("train.csv.gz", VALID_GZIP[: len(VALID_GZIP) // 2], None, r"not a valid gzip file \(.+\)"),
    "not-zip": ("train.csv.zip", _csv(_cells()), None, r"not a valid zip file \(BadZipFile: .+\)"),
    "zip-without-csv": (
        "train.zip",
        _zip({"readme.txt": b"hi"}),
        None,
        re.escape("no .csv file inside (it holds 'readme.txt')"),
    ),
    "empty-zip": ("train.zip", _zip({}), None, re.escape("no .csv file inside (it is empty)")),
    "zip-with-two-csv": (
        "train.zip",
        _zip({"train.csv": _csv(_cells()), "test.csv": b""}),
        None,
        re.escape("2 .csv files inside ('train.csv', 'test.csv'); expected exactly one"),
    ),
    "corrupt-zip-member": (
        "train.csv.zip",
        CORRUPT_ZIP,
        None,
        re.escape("cannot extract 'train.csv' (BadZipFile: Bad CRC-32 for file 'train.csv')"),
    ),
    "not-utf8": (
        "train.csv",
        _change(3, "feat_9", "X").replace(b",X,", b",\xff,"),
        3,
        re.escape("not UTF-8 text (byte 0xff)"),
    ),
    "gzip-named-csv": (
        "train.csv",
        VALID_GZIP,
        1,
        re.escape("not UTF-8 text (byte 0x8b) (is it compressed? name it .csv.gz or .zip)"),
    ),
    "empty-file": ("train.csv", b"", None, re.escape(f"empty file, expected a header naming {SCHEMA}")),
    "only-blank-lines": ("train.csv", b"\n  \n\n", None, "empty file, .*"),
    "header-only": ("train.csv", _csv(_cells()[:1]) + b"\n", None, re.escape("no data rows after the header")),
    "duplicate-column": (
        "train.csv",
        _header([*HEADER[:4], "feat_3", *HEADER[5:]]),
        1,
        re.escape("duplicate column 'feat_3' in the header"),
    ),
    "missing-columns": (
        "train.csv",
        _header(MISSING_SIX),
        1,
        re.escape(f"missing columns feat_88, feat_89, feat_90, feat_91, feat_92 and 1 more {EXPECTED}"),
    ),
    "unknown-columns": (
        "train.csv",
        _header([*HEADER, "price", ""]),
        1,
        re.escape(f"unknown columns 'price', '' {EXPECTED}"),
    ),
    "missing-and-unknown": (
        "train.csv",
        _header([name if name != "feat_1" else "feat_01" for name in HEADER]),
        1,
        re.escape(f"missing column feat_1; unknown column 'feat_01' {EXPECTED}"),
    ),
    "no-header": (
        "train.csv",
        _csv(_cells()[1:]),
        1,
        re.escape(f"no Otto header; the first line must name the columns {SCHEMA}"),
    ),
    "short-row": (
        "train.csv",
        _csv([*_cells()[:2], _cells()[2][:-1], *_cells()[3:]]),
        3,
        re.escape("94 fields, expected 95"),
    ),
    "long-row": ("train.csv", _csv([*_cells()[:4], [*_cells()[4], ""]]), 5, re.escape("96 fields, expected 95")),
    "not-a-number": ("train.csv", _change(4, "feat_7", "abc"), 4, re.escape("feat_7 is not a number: 'abc'")),
    "long-value-cut": (
        "train.csv",
        _change(2, "feat_93", "x" * 100),
        2,
        re.escape(f"feat_93 is not a number: '{'x' * 20}...'"),
    ),
    "empty-feature": ("train.csv", _change(6, "feat_1", ""), 6, re.escape("feat_1 is empty")),
    "nan": ("train.csv", _change(2, "feat_50", "nan"), 2, re.escape("feat_50 is not a finite number: 'nan'")),
    "inf": ("train.csv", _change(2, "feat_50", "-inf"), 2, re.escape("feat_50 is not a finite number: '-inf'")),
    "beyond-float32": (
        "train.csv",
        _change(2, "feat_50", "1e39"),
        2,
        re.escape("feat_50 is not a finite number: '1e39'"),
    ),
    "negative": (
        "train.csv",
        _change(5, "feat_2", "-1"),
        5,
        re.escape("feat_2 is negative: '-1'; counts must be >= 0"),
    ),
    "unknown-class": (
        "train.csv",
        _change(3, "target", "Class_10"),
        3,
        re.escape("unknown class 'Class_10', expected Class_1..Class_9"),
    ),
    "empty-target": ("train.csv", _change(3, "target", " "), 3, re.escape("empty target, expected Class_1..Class_9")),
    "newline-in-value": ("train.csv", _change(3, "feat_7", '"1\n2"'), 4, re.escape(r"feat_7 is not a number: '1\n2'")),
    "malformed-csv": (
        "train.csv",
        _change(3, "feat_7", "9" * 200_000),
        3,
        r"malformed CSV: field larger than field limit \(\d+\)",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_file_is_one_line_naming_the_file_and_line(tmp_path, case):
    name, content, line, problem = MALFORMED[case]
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content == "under-a-file":  # reading it fails with an OSError that is neither "not found" nor a folder
        (tmp_path / "plain").write_bytes(b"")
        path = tmp_path / "plain" / name
    elif content != "missing":
        path.write_bytes(content)
    with pytest.raises(PipelineError) as error:
        read_otto_csv(path)
    message = str(error.value)
    where = f"{path}:{line}: " if line else f"{path}: "
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(where), message
    assert re.fullmatch(re.escape(where) + problem, message), message  # `.` matches no newline: one line


def test_the_first_bad_line_is_reported(tmp_path):
    rows = _cells()
    rows[4][HEADER.index("feat_3")] = "-2"
    rows[2][HEADER.index("feat_80")] = "?"
    with pytest.raises(PipelineError, match=r":3: feat_80 is not a number: '\?'$"):
        read_otto_csv(_write(tmp_path, rows))


# --- torch-free -----------------------------------------------------------------------------

def test_reader_and_generator_work_where_torch_cannot_be_imported(tmp_path, no_torch_env):
    out = tmp_path / "train.csv.zip"
    script = (
        f"""
import runpy, sys
from sitecustomize import BLOCKER
from handoff.otto_csv import read_otto_csv

sys.argv = ["otto_synthetic", {str(out)!r}, "--rows", "50", "--seed", "3"]
try:
    runpy.run_module("pipeline.datasets.otto_synthetic", run_name="__main__")
except SystemExit as stop:
    assert stop.code == 0, stop.code
table = read_otto_csv({str(out)!r})
assert table.features.shape == (50, 93) and table.labels.tolist() == sorted(table.labels.tolist())
assert not BLOCKER.attempts and "torch" not in sys.modules, BLOCKER.attempts
print("torch-free ok")
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=REPO, env=no_torch_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("torch-free ok\n")
