"""Which prompts `recsys infer` answers: the filters, a fixed list of prompt ids, and the
deterministic shard rule.

    recsys infer --data R --checkpoint C --split valid --prompt-ids bench/sample.txt
    recsys infer --data R --checkpoint C --shard 1/4        # or torchrun: RANK / WORLD_SIZE

Order: split, family, template, seen/unseen, kind -> --users (first N users in prompt
order) or --prompt-ids (exactly those, in file order) -> --limit (first N) -> --shard.

Shard rule: of the N selected prompts (in selection order), shard i of n answers the prompts
at positions i, i+n, i+2n, ... (round-robin, so every shard gets a similar mix of prompt
lengths and modes). Shard i therefore holds ceil((N - i) / n) prompts, and interleaving the
shard files row by row (shard 0 row 0, shard 1 row 0, ..., shard 0 row 1, ...) restores the
unsharded order; `recsys merge-predictions` does exactly that.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import polars as pl

from recsys_cli.artifacts import schemas
from recsys_cli.errors import InputError, RecsysError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def bad_option(hint: str, message: str) -> RecsysError:
    """A one-line usage error naming the option (exit code 2, like Typer's BadParameter)."""
    return RecsysError(f"{hint}: {message}", exit_code=2)


def filter_prompts(df: pl.DataFrame, split: str, family=None, template=None, seen=None, kind=None) -> pl.DataFrame:
    if split not in schemas.SPLITS:
        raise bad_option("--split", f"expected one of {', '.join(schemas.SPLITS)}, got {split!r}")
    if family is not None and family not in schemas.FAMILIES:
        raise bad_option("--family", f"expected one of {', '.join(schemas.FAMILIES)}, got {family!r}")
    df = df.filter(pl.col("split") == split)
    if family is not None:
        df = df.filter(pl.col("family") == family)
    if template is not None:
        df = df.filter(pl.col("template_id") == template)
    if seen is not None:
        df = df.filter(pl.col("seen") == seen)
    if kind is not None:
        from recsys_cli.data.templates import TEMPLATES

        kinds = sorted({t.kind for t in TEMPLATES})
        if kind not in kinds:
            raise bad_option("--kind", f"expected one of {', '.join(kinds)}, got {kind!r}")
        df = df.filter(pl.col("template_id").is_in([t.template_id for t in TEMPLATES if t.kind == kind]))
    return df


def read_prompt_ids(path: Path) -> list[tuple[int, str]]:
    """(line number, prompt id) per non-blank line of a --prompt-ids file; repeats are errors."""
    path = Path(path)
    if not path.is_file():
        raise RecsysError(f"{path}: --prompt-ids file not found", exit_code=2)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError.at(path, None, "a UTF-8 text file with one prompt_id per line")
    out, seen = [], {}
    for n, line in enumerate(text.splitlines(), start=1):
        pid = line.strip()
        if not pid:
            continue
        if pid in seen:
            raise InputError.at(
                path, n, f"prompt_id {pid!r} is repeated (first on line {seen[pid]}); expected each id once"
            )
        seen[pid] = n
        out.append((n, pid))
    if not out:
        raise InputError.at(path, None, "at least one prompt_id (one per line)")
    return out


def pick_ids(df: pl.DataFrame, everything: pl.DataFrame, path: Path) -> pl.DataFrame:
    """The rows of `df` named by the --prompt-ids file, in file order. `everything` (all of
    prompts.parquet) tells an unknown id from one the other filters leave out."""
    wanted = read_prompt_ids(path)
    have = set(df["prompt_id"].to_list())
    known = None
    for line, pid in wanted:
        if pid not in have:
            known = set(everything["prompt_id"].to_list()) if known is None else known
            why = (
                "is not selected by --split/--family/--template/--seen/--kind"
                if pid in known
                else f"is not a prompt_id of {schemas.PROMPTS}"
            )
            raise InputError.at(path, line, f"prompt_id {pid!r} {why}; expected ids of the selected prompts")
    order = pl.DataFrame({"prompt_id": [p for _, p in wanted], "_o": list(range(len(wanted)))})
    return df.join(order, on="prompt_id", how="inner").sort("_o").drop("_o")


def first_users(df: pl.DataFrame, users: int) -> pl.DataFrame:
    first = df["user_id"].unique(maintain_order=True).head(users)
    return df.filter(pl.col("user_id").is_in(first.implode()))


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """'i/n' (0 <= i < n) -> (i, n); None -> RANK/WORLD_SIZE of torchrun when WORLD_SIZE > 1."""
    if value is None:
        world = os.environ.get("WORLD_SIZE")
        rank = os.environ.get("RANK")
        if world is None or rank is None:
            return None
        if not (world.isdigit() and rank.isdigit()) or int(rank) >= int(world):
            raise bad_option(
                "RANK/WORLD_SIZE", f"expected 0 <= RANK < WORLD_SIZE, got RANK={rank!r} WORLD_SIZE={world!r}"
            )
        return None if int(world) <= 1 else (int(rank), int(world))
    m = _SHARD.match(value)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise bad_option("--shard", f"expected i/n with 0 <= i < n (e.g. 0/4), got {value!r}")
    i, n = int(m.group(1)), int(m.group(2))
    return None if n == 1 else (i, n)


def shard_rows(df: pl.DataFrame, shard: tuple[int, int] | None) -> pl.DataFrame:
    """Round-robin slice: positions i, i+n, i+2n, ... of the selection."""
    if shard is None:
        return df
    i, n = shard
    return df.gather_every(n, offset=i) if i < df.height else df.head(0)


def shard_count(total: int, shard: tuple[int, int]) -> int:
    i, n = shard
    return max(0, -(-(total - i) // n))


def shard_suffix(shard: tuple[int, int]) -> str:
    return f".shard-{shard[0]}-of-{shard[1]}"


def shard_path(out: Path, shard: tuple[int, int] | None) -> Path:
    """pred.parquet -> pred.shard-1-of-4.parquet (every shard writes its own file)."""
    if shard is None:
        return out
    suffix = out.suffix or ".parquet"
    return out.with_name(f"{out.name[: -len(out.suffix)] if out.suffix else out.name}{shard_suffix(shard)}{suffix}")
