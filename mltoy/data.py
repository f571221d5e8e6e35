"""The iris-shaped CSVs: read and checked, whole or a chunk at a time, with one-line errors that
name the file, the line and the column. pandas is imported by the functions that read, so that
checking what was already checked (kit/data_checks.py) costs no import.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from mltoy import InputError
from mltoy.params import SplitParams

if TYPE_CHECKING:
    import pandas as pd

RESTORE_HINT = "; run `make data` to restore it"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABEL = "species"
COLUMNS = [*FEATURES, LABEL]


class DataError(InputError):
    """An input file is missing or malformed; the message is one line naming the file."""


def read_raw(raw_csv: Path, p: SplitParams) -> pd.DataFrame:
    """The raw dataset, checked for everything prepare needs: an iris-shaped CSV that `split`
    can split with these params."""
    df = read_dataset(raw_csv, restore_hint=RESTORE_HINT)
    check_split(df[LABEL].value_counts().to_dict(), raw_csv, p)
    return df


@dataclass(frozen=True)
class RawSummary:
    """What scanning a raw file found: the md5 of exactly the bytes checked, and its classes."""

    md5: str
    rows: int
    classes: dict[str, int]  # rows per label


def scan_raw(raw_csv: Path, chunk_rows: int = 100_000) -> RawSummary:
    """Check the raw dataset as read_raw does, a chunk of rows at a time, so memory stays flat
    however large the file (2M rows: 1.4 s and +40 MB, against 3.4 s and +230 MB read whole).
    The md5 is of the very bytes the checks read."""
    import pandas as pd

    path = Path(raw_csv)
    if not path.is_file():
        raise DataError(f"{path}: file not found{RESTORE_HINT}")
    classes: Counter[str] = Counter()
    rows = 0
    with open(path, "rb", buffering=0) as f:
        hashing = _HashingReader(f)
        buffered = io.BufferedReader(hashing, 1 << 20)
        with _csv_errors(path):
            for chunk in pd.read_csv(buffered, chunksize=chunk_rows):
                chunk = _checked(chunk, path, first_line=rows + 2)
                classes.update(chunk[LABEL].value_counts().to_dict())
                rows += len(chunk)
        while buffered.read(1 << 20):  # any bytes the parser did not need (none, for a CSV)
            pass
    if rows == 0:
        raise DataError(f"{path}: no data rows")
    return RawSummary(hashing.md5.hexdigest(), rows, dict(classes))


def read_dataset(path: Path, restore_hint: str = "") -> pd.DataFrame:
    """Read an iris-shaped CSV and say clearly what is wrong with it, if anything."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found{restore_hint}")
    with _csv_errors(path):
        df = pd.read_csv(path)
    if df.empty and list(df.columns) == COLUMNS:
        raise DataError(f"{path}: no data rows")
    return _checked(df, path, first_line=2)


@contextmanager
def _csv_errors(path: Path) -> Iterator[None]:
    """pandas' errors for an unreadable CSV, as one line naming the file."""
    import pandas as pd

    try:
        yield
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a valid CSV: {str(exc).strip()}") from None


def _checked(df: pd.DataFrame, path: Path, first_line: int) -> pd.DataFrame:
    """Rows of an iris-shaped CSV (the first of them on line `first_line` of the file), checked:
    the columns, a number in every feature, a label on every row. Features become floats."""
    if list(df.columns) != COLUMNS:
        missing = [c for c in COLUMNS if c not in df.columns]
        unexpected = [c for c in df.columns if c not in COLUMNS]
        problems = [f"missing columns {missing}"] if missing else []
        problems += [f"unexpected columns {unexpected}"] if unexpected else []
        raise DataError(f"{path}: expected columns {COLUMNS}: {'; '.join(problems) or 'wrong order'}")
    import pandas as pd

    for col in FEATURES:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            at = int(bad.argmax())
            raise DataError(
                f"{path}: line {first_line + at}, column {col!r}: expected a number, got {df[col].iloc[at]!r}"
            )
        df[col] = values.astype(float)
    missing_label = df[LABEL].isna().to_numpy()
    if missing_label.any():
        raise DataError(f"{path}: line {first_line + int(missing_label.argmax())}, column {LABEL!r}: missing label")
    df[LABEL] = df[LABEL].astype(str)
    return df


def check_split(classes: dict[str, int], path: Path, p: SplitParams) -> None:
    """Whether a dataset with these rows per class can be split, stratified, with these params."""
    rows = sum(classes.values())
    if len(classes) < 2:
        raise DataError(f"{path}: column {LABEL!r} has a single class ({next(iter(classes), '')!r}); need 2+")
    n_test = math.ceil(rows * p.test_size)  # as scikit-learn rounds the test size
    smallest = min(classes.values())
    if smallest < 2 or n_test < len(classes) or rows - n_test < len(classes):
        raise DataError(
            f"{path}: too few rows ({rows}, smallest class {smallest}) for a stratified "
            f"split with split.test_size={p.test_size} and {len(classes)} classes"
        )


class _HashingReader(io.RawIOBase):
    """A file, read through: every byte read also goes into an md5."""

    def __init__(self, f):
        self.f, self.md5 = f, hashlib.md5()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.f.readinto(buffer)
        if n:
            self.md5.update(memoryview(buffer)[:n])
        return n
