"""Import files: CSV (a header row naming the fields) or JSON Lines (one object a line),
read row by row with each row's line number, so a file of any size streams."""

from __future__ import annotations

import csv
import enum
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from crmkit.core.imports.service import Row
from crmkit.errors import BadUserInput


class FileFormat(enum.StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


SUFFIXES = {".csv": FileFormat.CSV, ".jsonl": FileFormat.JSONL, ".ndjson": FileFormat.JSONL}


def file_format(path: Path, given: str | None) -> FileFormat:
    """``given``, else the format the file's extension names."""
    if given is not None:
        try:
            return FileFormat(given.lower())
        except ValueError:
            raise BadUserInput("--format must be csv or jsonl", field="format") from None
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise BadUserInput(
            f"cannot tell the format of {path.name} from its extension: name it .csv or .jsonl, "
            "or pass --format",
            field="format",
        )
    return found


class BadLine(ValueError):
    """A line that is no row at all (malformed JSON, a CSV row of the wrong width)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def read_rows(path: Path, fmt: FileFormat) -> Iterator[Row | BadLine]:
    """Each row with its line number (the header is line 1 of a CSV file); blank lines
    are left out. A CSV row spanning lines (a quoted line break) counts at its first."""
    with path.open(encoding="utf-8-sig", newline="") as file:
        if fmt is FileFormat.JSONL:
            for number, text in enumerate(file, start=1):
                if text.strip():
                    yield _json_row(number, text)
            return
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            return
        names = [name.strip() for name in header]
        line = reader.line_num + 1
        for cells in reader:
            if cells and any(cell.strip() for cell in cells):
                if len(cells) != len(names):
                    yield BadLine(line, f"{len(cells)} cells where the header names {len(names)}")
                else:
                    yield (line, dict(zip(names, cells, strict=True)))
            line = reader.line_num + 1


def _json_row(number: int, text: str) -> Row | BadLine:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return BadLine(number, f"not JSON: {exc.msg}")
    if not isinstance(value, dict):
        return BadLine(number, "not a JSON object")
    return (number, value)


def sha256(path: Path) -> str:
    """The file's SHA-256: an import run is resumed only for the very same file."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def count_rows(path: Path) -> int:
    """Non-blank lines, less a CSV's header: the total a progress bar counts to."""
    with path.open("rb") as file:
        return sum(1 for text in file if text.strip())
