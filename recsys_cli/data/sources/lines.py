"""Line readers with one-line errors: file, line number and what was expected.

for lineno, obj in json_lines(Path("reviews_Beauty_5.json.gz"), literal_ok=False): ...
"""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path
from typing import Iterator

from recsys_cli.errors import InputError


def _open(path: Path):
    if not path.is_file():
        raise InputError.at(path, None, "file not found")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without newline); blank lines skipped."""
    with _open(path) as fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InputError.at(path, lineno, f"valid UTF-8 text (undecodable byte at column {exc.start + 1})")
                line = line.strip()
                if line:
                    yield lineno, line
        except (OSError, EOFError) as exc:  # truncated or not gzip
            raise InputError.at(path, None, f"a readable {'gzip ' if path.suffix == '.gz' else ''}file ({exc})")


def json_lines(path: Path, literal_ok: bool = False) -> Iterator[tuple[int, dict]]:
    """One JSON object per line. With `literal_ok`, Amazon 2014 meta lines (Python dict
    literals such as `{'asin': '0001', 'price': 3.5}`) are parsed with `ast.literal_eval`,
    which evaluates literals only, never code."""
    for lineno, line in text_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
            if literal_ok:
                try:
                    obj = ast.literal_eval(line)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    obj = None
            if obj is None:
                what = "a JSON object (or Python dict literal)" if literal_ok else "a JSON object"
                raise InputError.at(path, lineno, f"{what}; got malformed text {line[:40]!r}")
        if not isinstance(obj, dict):
            raise InputError.at(path, lineno, f"a JSON object; got {type(obj).__name__}")
        yield lineno, obj
