"""`recsys mask-preview`: what the pretraining objective sees (the paper's Figure 1).

    recsys mask-preview --data runs/toys -n 2 --level entity
    recsys mask-preview --data runs/toys -n 1 --level prompt --seed 3 --json

For each example: the original text with entities highlighted, the corrupted Part A, the
Part B spans, and a token table with inter / intra positions. `--json` prints one JSON
object per line (tokens, input_ids, labels, inter, intra, part_a_len, spans, entity_spans, level).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Annotated

import typer

from recsys_cli import console
from recsys_cli.options import AT_LEAST_1, AsJson, DataDir, ModelOpt, Quiet, Seed, TrustRemoteCode, ranged

_LEVELS = ("entity", "sentence", "document", "prompt")


def _render(ex, tokens: list[str], targets: list[str], text: str, char_entities: list[dict], title: str) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    shown = Text(text)
    for e in char_entities:
        shown.stylize("bold cyan underline", e["start"], e["end"])
    console.out.print(
        Panel(shown, title=f"{title}: original (entities highlighted)", title_align="left"), soft_wrap=False
    )
    a = ex.part_a_len
    console.out.print(
        Panel(
            Text("".join(tokens[:a]).replace("Ġ", " ").replace("Ċ", "\\n")),
            title="Part A (corrupted)",
            title_align="left",
        ),
        soft_wrap=False,
    )
    parts, i = [], a
    while i < len(tokens):
        j = i + 1
        while j < len(tokens) and ex.inter[j] == ex.inter[i] and tokens[j] != "[START]":
            j += 1
        parts.append("".join(tokens[i:j]).replace("Ġ", " ").replace("Ċ", "\\n") + " -> [END]")
        i = j
    console.out.print(
        Panel(Text("\n".join(parts) or "(none)"), title="Part B (spans in order)", title_align="left"), soft_wrap=False
    )
    table = Table(title=f"{title}: tokens ({ex.level}, Part A = first {a})")
    for col in ("#", "part", "token", "inter", "intra", "target"):
        table.add_column(col, justify="right" if col in ("#", "inter", "intra") else "left")
    for k, (tok, inter, intra, target) in enumerate(zip(tokens, ex.inter, ex.intra, targets)):
        table.add_row(str(k), "A" if k < a else "B", tok, str(inter), str(intra), target)
    console.print_table(table)


def command(
    data: DataDir,
    n: Annotated[int, ranged("-n", "--num", rule=AT_LEAST_1, help="How many documents or prompts to show.")] = 3,
    level: Annotated[str, typer.Option("--level", help="entity | sentence | document | prompt.")] = "entity",
    seed: Seed = 0,
    model: ModelOpt = None,
    trust_remote_code: TrustRemoteCode = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Show masked examples: original text, Part A, Part B and the 2D positions."""
    from recsys_cli.artifacts import schemas
    from recsys_cli.artifacts.io import read_artifact
    from recsys_cli.data import masking, tokenize
    from recsys_cli.data.entities import pool_trie
    from recsys_cli.data.special_tokens import add_special_tokens
    from recsys_cli.modeling.registry import load_tokenizer, resolve_model
    from recsys_cli.training.recipe import Recipe

    console.set_quiet(quiet)
    if level not in _LEVELS:
        raise typer.BadParameter(f"expected one of {', '.join(_LEVELS)}, got {level!r}", param_hint="--level")
    data = Path(data)
    name = schemas.PROMPTS if level == "prompt" else schemas.CORPUS
    df = read_artifact(data, name)
    if len(df) == 0:
        from recsys_cli.errors import RecsysError

        raise RecsysError(f"{data / name}: no rows to preview", exit_code=2)
    rng = random.Random(seed)
    picks = sorted(rng.sample(range(len(df)), min(n, len(df))))
    console.log(f"loading tokenizer of {model or 'embedded'}")
    tok = load_tokenizer(resolve_model(model), trust_remote_code=trust_remote_code)
    special = add_special_tokens(tok)
    trie = pool_trie(data, tok)  # numbers Part B intra ids exactly as pretrain and infer do
    cfg = Recipe().mask  # the recipe's defaults, as pretrain masks without --config
    for row_no in picks:
        row = df.row(row_no, named=True)
        if level == "prompt":
            src = tokenize.tokenize_document(row["source"], row["source_entities"], tok)
            tgt = tokenize.tokenize_target(row["target"], row["target_entities"], tok)
            ex = masking.prompt_example(src, tgt, special, trie)
            key, text = row["prompt_id"], f"{row['source']} || {row['target']}"
            shift = len(row["source"]) + 4  # " || " then the target
            ents = list(row["source_entities"] or []) + [
                {**e, "start": e["start"] + shift, "end": e["end"] + shift} for e in row["target_entities"] or []
            ]
        else:
            doc = tokenize.tokenize_document(row["text"], row["entities"], tok)
            ex = masking.mask_document(doc, level, rng, cfg, special, trie)
            key, text, ents = row["doc_id"], row["text"], list(row["entities"] or [])
        tokens = tok.convert_ids_to_tokens(ex.input_ids)
        if as_json:  # one JSON object per example (JSON Lines)
            obj = {"id": key, "tokens": tokens, **ex.to_dict()}
            sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
            continue
        targets = [
            t if lab >= 0 else ""
            for t, lab in zip(tok.convert_ids_to_tokens([max(x, 0) for x in ex.labels]), ex.labels)
        ]
        _render(ex, tokens, targets, text, ents, str(key))
    sys.stdout.flush()
