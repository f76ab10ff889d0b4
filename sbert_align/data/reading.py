"""Reading labelled rows from ``.csv`` / ``.tsv`` / ``.jsonl`` / ``.json`` files, with errors naming a file and line.

CSV and TSV files are read with the standard library's ``csv`` module (``strict=True``), not ``pandas.read_csv``:
``csv`` reports the exact line where each record starts even when a quoted field holds newlines, and keeps every
cell a string ("NA", "null" stay text). ``pandas.read_csv`` silently fills short rows with NaN and turns such strings
into missing values unless told otherwise, so it would still need a hand check of every row.

Every row keeps where it came from (:class:`Rows`): the line where it starts in a file, or its index for in-memory
data, so that the checks made later (missing columns, empty texts, missing labels) can point at it.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Rows", "read_rows", "read_table", "check_columns", "SUFFIXES"]

#: File types :func:`read_rows` understands.
SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


@dataclass
class Rows:
    """Rows of one table (each a dict column -> value) and where each row came from.

    Args:
        rows: The rows.
        source: What they were read from: a file path, or e.g. ``"split 'train'"`` for in-memory data.
        positions: One per row: the 1-based line where the row starts (``unit="line"``) or its 0-based index
            (``unit="row"`` or ``"item"``).
        unit: ``"line"`` for text files, ``"item"`` for the elements of a JSON array, ``"row"`` for in-memory data.
        columns: The header of a CSV / TSV file, else the keys of the first row.

    Example:
        ::

            from sbert_align.data import Rows

            rows = Rows.from_records([{"text": "hi", "label": "greet"}], source="split 'train'")
            assert rows.where(0) == "split 'train' row 0"
    """

    rows: list[dict[str, Any]]
    source: str
    positions: list[int]
    unit: str = "line"
    columns: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.positions) != len(self.rows):
            raise ValueError(f"positions: expected one per row ({len(self.rows)}), got {len(self.positions)}.")
        if not self.columns and self.rows:
            self.columns = tuple(self.rows[0].keys())

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]], source: str, unit: str = "row") -> Rows:
        """In-memory rows, located by their 0-based index."""
        rows = list(records)
        return cls(rows, source, list(range(len(rows))), unit)

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int) -> str:
        """Where row ``i`` came from, e.g. ``"data/train.csv line 12"`` or ``"split 'train' row 11"``."""
        return f"{self.source} {self.unit} {self.positions[i]}"


def _count(n: int, what: str) -> str:
    """``"1 row"``, ``"3 rows"``: ``n`` and ``what``, plural unless ``n`` is 1."""
    return f"{n} {what}{'' if n == 1 else 's'}"


def _read_delimited(path: Path, delimiter: str) -> Rows:
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    header: list[str] | None = None
    ragged: list[tuple[int, int]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            start = 1
            try:
                for record in reader:
                    line, start = start, reader.line_num + 1
                    if not record or (len(record) == 1 and not record[0].strip()):
                        continue  # a blank line
                    if header is None:
                        header = record
                        _check_header(header, path, line)
                        continue
                    if len(record) != len(header):
                        ragged.append((line, len(record)))
                        continue
                    rows.append(dict(zip(header, record)))
                    positions.append(line)
            except csv.Error as e:
                hint = " (a quoted field is never closed)" if "unexpected end of data" in str(e) else ""
                raise ValueError(
                    f"data: {path} line {start}: unreadable {path.suffix[1:].upper()} ({e}){hint}."
                ) from None
    except UnicodeDecodeError as e:
        raise ValueError(f"data: {path} is not UTF-8 text ({e.reason} at byte {e.start}).") from None
    if ragged:
        line, got = ragged[0]
        kind = "tab" if delimiter == "\t" else "comma"
        raise ValueError(
            f"data: {path} line {line}: {got} field{'' if got == 1 else 's'} where the header has {len(header)} "
            f"({', '.join(header)}); {_count(len(ragged), 'row')} in all with the wrong number of fields. Every row "
            f"needs one value per column; quote fields that hold a {kind}."
        )
    return Rows(rows, str(path), positions, "line", tuple(header or ()))


def _check_header(header: Sequence[str], path: Path, line: int) -> None:
    blank = [i + 1 for i, c in enumerate(header) if not c.strip()]
    if blank:
        raise ValueError(f"data: {path} line {line}: the header has an empty column name (column {blank[0]}).")
    twice = sorted({c for c in header if list(header).count(c) > 1})
    if twice:
        raise ValueError(f"data: {path} line {line}: the header names {twice} more than once.")


def _read_json(path: Path) -> Rows:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"data: {path} is not UTF-8 text ({e.reason} at byte {e.start}).") from None
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"data: {path} line {e.lineno} is not valid JSON ({e.msg}).") from None
        positions, unit = list(range(len(rows))), "item"
    else:
        rows, positions, unit = [], [], "line"
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"data: {path} line {n} is not valid JSON ({e.msg}).") from None
                positions.append(n)
    for row, position in zip(rows, positions):
        if not isinstance(row, dict):
            raise ValueError(
                f"data: {path} {unit} {position} is a JSON {type(row).__name__}, not an object; "
                f"{path.name} must hold one JSON object per {'line' if unit == 'line' else 'item'}."
            )
    return Rows(rows, str(path), positions, unit)


def read_rows(path: str | os.PathLike) -> Rows:
    """Read a table file into :class:`Rows`, each row located by the line where it starts.

    Formats: ``.csv`` (comma) and ``.tsv`` (tab) with a header row, RFC 4180 quoting (quoted fields may hold the
    delimiter, quotes and newlines), UTF-8 with or without a byte-order mark, blank lines skipped; ``.jsonl`` (one JSON
    object per line; a ``.json`` file is read the same way unless it holds one JSON array of objects).

    Args:
        path: The file.

    Returns:
        The rows; CSV / TSV values are strings, exactly as in the file.

    Raises:
        ValueError: no such file, an unsupported type, text that is not UTF-8, a header with an empty or repeated
            column name, a row with more or fewer fields than the header (ragged; the message names the file, the line
            and how many rows are wrong), broken quoting, invalid JSON, or a JSON value that is not an object.

    Example:
        ::

            import tempfile
            from pathlib import Path
            from sbert_align.data import read_rows

            path = Path(tempfile.mkdtemp()) / "toy.csv"
            path.write_text('text,label\\n"hello, world",greet\\n"two\\nlines",other\\n')
            rows = read_rows(path)
            assert rows.rows[1] == {"text": "two\\nlines", "label": "other"}
            assert rows.where(1).endswith("toy.csv line 3")
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data: no such file {str(path)!r}.")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".json"):
        return _read_json(path)
    raise ValueError(f"data: unsupported file type {suffix!r} ({path.name}); expected one of {SUFFIXES}.")


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``.csv`` / ``.tsv`` / ``.jsonl`` / ``.json`` file as dicts (see :func:`read_rows`).

    Args:
        path: The file.

    Returns:
        One dict (column -> value) per row.

    Raises:
        ValueError: as :func:`read_rows` (ragged rows, broken quoting, invalid JSON, ...), naming the file and line.

    Example:
        ::

            import tempfile
            from pathlib import Path
            from sbert_align.data import read_table

            path = Path(tempfile.mkdtemp()) / "toy.jsonl"
            path.write_text('{"text": "hi", "label": 1}\\n')
            assert read_table(path) == [{"text": "hi", "label": 1}]
    """
    return read_rows(path).rows


def check_columns(rows: Rows, needed: Sequence[str], where: str) -> None:
    """Raise a ``ValueError`` when some rows lack a column in ``needed`` (JSON rows may differ in their keys).

    Args:
        rows: The rows to check.
        needed: The columns every row must have.
        where: What the rows are, for the message (e.g. the data set's name).

    Raises:
        ValueError: naming how many rows lack a column, the first one's location and the column it lacks.

    Example:
        ::

            from sbert_align.data import Rows, check_columns

            check_columns(Rows.from_records([{"text": "a", "label": 1}], "split 'train'"), ["text", "label"], "toy")
    """
    bad = [i for i, row in enumerate(rows.rows) if any(c not in row for c in needed)]
    if bad:
        missing = [c for c in needed if c not in rows.rows[bad[0]]]
        raise ValueError(
            f"{where}: {rows.where(bad[0])} lacks column(s) {missing}; {_count(len(bad), 'row')} in all without a "
            f"needed column (every row needs {list(needed)})."
        )
