"""The second stage of two-stage ranking: the LLM scores the retriever's first K items of a
ranking prompt and the list is reordered (docs/rerank.md).

    recsys infer --data R --checkpoint C --candidates-from R/predictions/test/sasrec.parquet --rerank-k 50 --fusion 0.7

Per prompt (a batch of --batch-size prompts walks together): drop excluded (history) items from
the retriever's list, take its first K, score their titles with the constrained candidate
walker (one prompt pass, a shared KV cache, hypotheses end once a title is decided;
--item-scoring full sums full-vocabulary log-probs instead, full-norm divides that sum by the
title's token count and pmi subtracts the title's sum after a neutral prompt,
inference/calibrated.py; --item-scoring listwise lists the K in one labelled prompt,
inference/listwise.py), fuse with the retriever's scores (inference/fusion.py), and append the
rest of the retriever's list in its order. Every id comes from the checked retriever list, so
the output holds real, distinct items. With --fusion 0 the LLM is not run at all.
"""

from __future__ import annotations

from recsys_cli.inference import calibrated, fusion
from recsys_cli.inference.retriever import head


def rerank_rows(engine, rows: list[dict], excluded: list[set]) -> list[dict]:
    o = engine.opts
    heads = [head(*engine.retriever.lists[r["prompt_id"]], excl, o.rerank_k) for r, excl in zip(rows, excluded)]
    llm: list[list[float] | None] = [None] * len(rows)
    need = [k for k, (items, _, _) in enumerate(heads) if items and o.fusion != 0.0]
    if need and o.item_scoring == "listwise":  # one labelled prompt per candidate list (inference/listwise.py)
        got = engine.listwise.score([rows[k] for k in need], [heads[k][0] for k in need])
    elif need:
        a, ai, soft = engine.part_a([rows[k] for k in need])
        ids = [heads[k][0] for k in need]
        titles = [[engine.title_tokens(i) for i in its] for its in ids]
        got = calibrated.score_items(engine, a, ai, soft, ids, titles)
    if need:
        for k, g in zip(need, got):
            llm[k] = g
    out = []
    for r, (items, ret, rest), scores in zip(rows, heads, llm):
        final, fused = fusion.rerank(items, ret, scores, rest, o.fusion)
        text = engine.titles.get(final[0], final[0]) if final else ""
        out.append(engine._row(r, text, final, fused, bool(final)))
    return out
