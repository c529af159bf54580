"""Rerank training prompts (training/rerank.py): the loss of a train prompt whose candidates are
a retriever's top-K is -log P(target) under the candidate-restricted distribution that
`infer --candidates-from` ranks with.

    python -m pytest tests/unit/test_rerank_training.py -q
"""

from __future__ import annotations

import random

import polars as pl
import pytest

torch = pytest.importorskip("torch")

from recsys_cli.artifacts import schemas  # noqa: E402
from recsys_cli.artifacts.io import write_parquet  # noqa: E402


def _retriever_file(data, path, k: int = 8, seed: int = 0):
    """A ranked list for every train sequential/direct prompt: the target among k-1 other items
    (no provenance: a file from another tool, accepted)."""
    prompts = pl.read_parquet(data / schemas.PROMPTS).filter(
        (pl.col("split") == "train") & pl.col("family").is_in(["sequential", "direct"])
    )
    items = pl.read_parquet(data / schemas.ITEMS)["item_id"].to_list()
    rng = random.Random(seed)
    rows = []
    for pid, fam, tid, seen, target in prompts.select(
        "prompt_id", "family", "template_id", "seen", "item_id"
    ).iter_rows():
        others = [i for i in rng.sample(items, k + 1) if i != target][: k - 1]
        ranked = others[:3] + [target] + others[3:]
        rows.append(
            {
                "prompt_id": pid,
                "family": fam,
                "template_id": tid,
                "seen": seen,
                "output": ranked[0],
                "ranked": ranked,
                "scores": [float(-j) for j in range(len(ranked))],
                "valid": True,
            }
        )
    write_parquet(pl.DataFrame(rows, schema=schemas.PREDICTIONS_SCHEMA), path, schemas.PREDICTIONS_SCHEMA)
    return path


@pytest.fixture(scope="module")
def setup(toys_entities, tiny_model, tmp_path_factory):
    from recsys_cli.data.entities import pool_trie
    from recsys_cli.data.special_tokens import SpecialIds
    from recsys_cli.modeling.checkpoint import load_base_for_inference
    from recsys_cli.training.rerank import load_rerank_prompts

    lm, tok, _ = load_base_for_inference(tiny_model)
    torch.manual_seed(0)
    with torch.no_grad():
        lm.intra_embed.weight.normal_(0, 0.5)  # wrong intra ids would change the scores
    path = _retriever_file(toys_entities, tmp_path_factory.mktemp("ret") / "train.parquet")
    prompts = load_rerank_prompts(toys_entities, path, 8, tok)
    return lm, tok, SpecialIds.from_tokenizer(tok), pool_trie(toys_entities, tok), prompts, path


def test_restricted_positions_and_allowed_sets(setup):
    from recsys_cli.data import masking
    from recsys_cli.data.trie import EntityTrie
    from recsys_cli.training.rerank import restrict

    lm, tok, sp, trie, prompts, _ = setup
    assert len(prompts) > 100 and all(len(p.candidates) == 8 and p.target.ids in p.candidates for p in prompts)
    for p in prompts[:50]:
        ex = restrict(masking.prompt_example(p.source, p.target, sp, trie), p.candidates, sp.end)
        cand = EntityTrie((c, i) for i, c in enumerate(p.candidates))
        assert ex.level == "rerank" and ex.allowed
        for pos, opts in ex.allowed.items():
            assert len(opts) >= 2 and ex.labels[pos] in opts  # only decisive positions keep a label
            node = cand.walk(ex.input_ids[ex.part_a_len + 1 : pos + 1])
            assert sorted(cand.children(node) + ([sp.end] if cand.is_terminal(node) else [])) == opts
        labelled = {i for i, lab in enumerate(ex.labels) if lab != masking.IGNORE}
        assert labelled == set(ex.allowed)


def test_loss_is_minus_log_of_the_inference_score(setup):
    """Summed over the decisive positions, the training loss equals -log P(target) computed by
    the constrained candidate walker at inference (KV cache, dynamic intra ids)."""
    from recsys_cli.data import masking
    from recsys_cli.inference.candidates import score_candidates_constrained
    from recsys_cli.training.data import collate
    from recsys_cli.training.rerank import restrict

    lm, tok, sp, trie, prompts, _ = setup
    lm.eval()
    for p in prompts[:6]:
        ex = restrict(masking.prompt_example(p.source, p.target, sp, trie), p.candidates, sp.end)
        b = collate([ex], tok.pad_token_id, torch.float32)
        with torch.no_grad():
            out = lm(
                b["input_ids"],
                b["inter"],
                b["intra"],
                b["attn_mask_4d"],
                labels=b["labels"],
                allowed=(b["allowed"], b["allowed_ids"]),
            )
        trained = float(out.loss) * len(ex.allowed)
        a = ex.input_ids[: ex.part_a_len]
        with torch.inference_mode():
            scores = score_candidates_constrained(
                lm, a, ex.intra[: ex.part_a_len], sp.start, sp.end, p.candidates, trie
            )
        assert trained == pytest.approx(-scores[p.candidates.index(p.target.ids)], rel=1e-3, abs=1e-3)
        # the unrestricted loss on the same tokens is larger: the full vocabulary competes
        with torch.no_grad():
            full = lm(b["input_ids"], b["inter"], b["intra"], b["attn_mask_4d"], labels=b["labels"])
        assert float(full.loss) > float(out.loss)


def test_pretrain_with_rerank_prompts_trains(toys_entities, tiny_model, tmp_path, setup):
    from recsys_cli.training.loop import Trainer
    from recsys_cli.training.recipe import load_recipe

    path = setup[-1]
    sets = [
        ("model.name", tiny_model),
        ("train.max_steps", 3),
        ("train.batch_size", 4),
        ("train.max_length", 96),
        ("train.precision", "fp32"),
        ("eval.eval_every", 100),
        ("train.save_every", 100),
        ("rerank.candidates", str(path)),
        ("rerank.k", 8),
        ("rerank.weight", 0.5),
    ]
    tr = Trainer(load_recipe(None, sets), toys_entities, tmp_path / "C")
    levels = [tr.stream.example(i).level for i in range(40)]
    assert 8 <= levels.count("rerank") <= 32  # about half of the examples
    before = {n: p.detach().clone() for n, p in tr.lm.named_parameters() if p.requires_grad}
    out = tr.train()
    assert out["steps"] == 3 and out["loss"] == out["loss"]
    assert any(not p.detach().equal(before[n]) for n, p in tr.lm.named_parameters() if p.requires_grad)
    off = Trainer(load_recipe(None, sets[:-1] + [("rerank.weight", 0.0)]), toys_entities, tmp_path / "C0")
    plain = Trainer(load_recipe(None, sets[:-3]), toys_entities, tmp_path / "C1")
    # weight 0 draws nothing extra: the stream is the plain one
    assert [off.stream.example(i).input_ids for i in range(10)] == [
        plain.stream.example(i).input_ids for i in range(10)
    ]
