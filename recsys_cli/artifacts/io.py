"""Reading and writing artifacts: validated against `schemas`, written atomically,
byte-identical for identical data (Parquet + zstd, no timestamps in files).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import polars as pl

from recsys_cli.artifacts import outputs, schemas
from recsys_cli.errors import RecsysError


def _umask_mode(base: int) -> int:
    """`base` (0o666 files, 0o777 dirs) minus the process umask, like a plain open()/mkdir()."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def conform(df: pl.DataFrame, schema: Mapping[str, pl.DataType | type[pl.DataType]]) -> pl.DataFrame:
    """Select and cast `df` to `schema` (column order included). Extra columns are dropped;
    a missing column is an error (a bug in the writer, not in user input)."""
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise RecsysError(f"internal: frame lacks columns {missing} for schema {list(schema)}")
    return df.select([pl.col(c).cast(t) for c, t in schema.items()])


def write_parquet(
    df: pl.DataFrame,
    path: Path,
    schema: Mapping[str, pl.DataType | type[pl.DataType]] | None = None,
    metadata: dict[str, str] | None = None,
    kind: str | None = None,
) -> None:
    """Write one Parquet file atomically (temp file in the same directory, then rename);
    `metadata`: file-level key-value pairs (the provenance of predictions files). With `kind`
    (an artifacts/outputs.py kind) the file replaces only recsys's own output of that kind and is
    recorded in its directory's ledger; the bytes are the same either way."""
    if schema is None:
        schema = schemas.SCHEMAS.get(path.name)
    if schema is not None:
        df = conform(df, schema)
    if kind is not None:
        with outputs.write_file(Path(path), kind) as staged:
            df.write_parquet(staged, compression="zstd", statistics=False, row_group_size=1 << 20, metadata=metadata)
        return
    with outputs.atomic_file(Path(path)) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=False, row_group_size=1 << 20, metadata=metadata)


def write_json(obj: Any, path: Path, kind: str | None = None) -> None:
    """Indented, sorted JSON, atomically; with `kind` owned and recorded like `write_parquet`."""
    if kind is not None:
        outputs.write_json(obj, Path(path), kind)
        return
    with outputs.atomic_file(Path(path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_artifact(data_dir: Path, name: str, columns: list[str] | None = None) -> pl.DataFrame:
    """Read `data_dir/name`, checking it exists and has the contract's columns; a textualize
    file only from a complete run whose manifest records its content (`check_run_file`)."""
    path = Path(data_dir) / name
    if name in schemas.TEXTUALIZE_FILES:
        check_run_file(data_dir, name)
    if not path.is_file():
        hint = " (run `recsys build-entities` first)" if name.startswith("entities") else ""
        if name in schemas.TEXTUALIZE_FILES:
            hint = " (run `recsys textualize` first)"
        raise RecsysError(f"{path}: file not found{hint}", exit_code=2)
    try:
        df = pl.read_parquet(path, columns=columns)
    except Exception as exc:  # corrupt or not Parquet
        raise RecsysError(f"{path}: not a readable Parquet file ({type(exc).__name__})", exit_code=2)
    schema = schemas.SCHEMAS.get(name)
    if schema is not None:
        want = columns or list(schema)
        missing = [c for c in want if c in schema and c not in df.columns]
        if missing:
            raise RecsysError(f"{path}: missing columns {missing}; expected {list(schema)}", exit_code=2)
    return df


def require(data_dir: Path, *names: str) -> None:
    """Fail early, with the same one-line message as `read_artifact`, if a file is missing or
    (a textualize file) not the one its run's manifest records."""
    for name in names:
        if name in schemas.TEXTUALIZE_FILES:
            check_run_file(data_dir, name)
        if not (Path(data_dir) / name).is_file():
            read_artifact(data_dir, name)


_HASHED: dict[tuple, str] = {}  # (path, inode, size, mtime_ns) -> sha256: each file hashed once per process
_MANIFESTS: dict[tuple, Any] = {}  # the same key -> the parsed manifest.json


def _stat_key(path: Path) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)


def cached_sha256(path: Path) -> str:
    """`file_sha256`, computed once per process while the file's inode, size and mtime stay the same."""
    key = _stat_key(path)
    if key not in _HASHED:
        _HASHED[key] = file_sha256(path)
    return _HASHED[key]


def file_records(directory: Path, names) -> dict[str, dict]:
    """{name: {"bytes", "sha256"}} of files of `directory`: what a run's manifest.json records
    under "files" and `check_run_file` compares."""
    directory = Path(directory)
    return {n: {"bytes": (directory / n).stat().st_size, "sha256": file_sha256(directory / n)} for n in names}


def check_run_file(data_dir: Path, name: str) -> None:
    """Refuse to read textualize's file `name` of R unless R is a complete run: R has the
    manifest.json textualize writes last, and the file has the size and sha256 that manifest
    records (a file of another run, a mix left by a killed run, a hand edit: all refused). A
    manifest from before textualize recorded its files has nothing to compare and is accepted."""
    data_dir = Path(data_dir)
    again = f"run `recsys textualize ... --out {data_dir}`"
    mpath = data_dir / schemas.MANIFEST
    if not mpath.is_file():
        raise RecsysError(f"{data_dir}: not a complete recsys run (no manifest.json); {again}", exit_code=2)
    key = _stat_key(mpath)
    if key not in _MANIFESTS:
        try:
            _MANIFESTS[key] = json.loads(mpath.read_bytes())
        except (ValueError, UnicodeDecodeError):
            _MANIFESTS[key] = None
    man = _MANIFESTS[key]
    if not isinstance(man, dict) or not str(man.get("command", "")).startswith("textualize"):
        raise RecsysError(
            f"{mpath}: not a manifest of `recsys textualize`, so {data_dir} is not a recsys run; {again}", exit_code=2
        )
    files = man.get("files")
    if files is None:
        return
    entry = files.get(name) if isinstance(files, dict) else None
    path = data_dir / name
    if not isinstance(entry, dict):
        raise RecsysError(f"{mpath}: does not list {name}; {again}", exit_code=2)
    if not path.is_file():
        raise RecsysError(f"{path}: file not found, though {mpath} lists it; {again}", exit_code=2)
    if path.stat().st_size != entry.get("bytes") or cached_sha256(path) != entry.get("sha256"):
        raise RecsysError(
            f"{path}: is not the file {mpath} records (files of different textualize runs, or changed since); {again}",
            exit_code=2,
        )


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def data_fingerprint(data_dir: Path) -> str | None:
    """The identity of a textualized directory: sha256 of its manifest.json (the manifest holds
    the input hashes, options and row counts and nothing time-dependent). None without one."""
    path = Path(data_dir) / schemas.MANIFEST
    return file_sha256(path) if path.is_file() else None


def other_data(recorded: Any, data_dir: Path) -> tuple[str, str] | None:
    """None when `recorded` is the fingerprint of `data_dir`; else (its 12-character prefix, the
    recorded one's), for the one-line refusal of a file made on other data."""
    want = data_fingerprint(data_dir)
    return None if recorded == want else (str(want)[:12], str(recorded)[:12])


@contextmanager
def atomic_dir(final: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `final`, on failure it
    is removed, so no half-written output directory is ever left behind."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, _umask_mode(0o777))  # mkdtemp makes 0700 directories
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RecsysError(f"{final}: already exists")
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def manifest(command: str, options: dict[str, Any], inputs: list[Path], rows: dict[str, int]) -> dict:
    """The manifest.json payload: command, version, resolved options, input hashes, rows.
    Contains nothing time- or host-dependent so artifacts stay byte-identical."""
    from recsys_cli import __version__

    return {
        "command": command,
        "version": __version__,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(options.items())},
        "inputs": [{"path": str(p), "name": Path(p).name, "sha256": file_sha256(Path(p))} for p in inputs],
        "rows": rows,
    }
