"""The second stage of two-stage ranking: the LLM scores the retriever's first K items of a
ranking prompt and the list is reordered (docs/rerank.md).

    recsys infer --data R --checkpoint C --candidates-from R/predictions/test/sasrec.parquet --rerank-k 50 --fusion 0.7

Per prompt: drop excluded (history) items from the retriever's list, take its first K, score
their titles with the constrained candidate walker (one prompt pass, a shared KV cache,
hypotheses end once a title is decided; --item-scoring full sums full-vocabulary log-probs
instead), fuse with the retriever's scores (inference/fusion.py), and append the rest of the
retriever's list in its order. Every id comes from the checked retriever list, so the output
holds real, distinct items. With --fusion 0 the LLM is not run at all.
"""

from __future__ import annotations

from recsys_cli.inference import candidates, fusion
from recsys_cli.inference.retriever import head


def rerank_rows(engine, rows: list[dict], excluded: list[set]) -> list[dict]:
    o = engine.opts
    score = candidates.score_candidates if o.item_scoring == "full" else candidates.score_candidates_constrained
    out = []
    for r, excl in zip(rows, excluded):
        ranked, scores = engine.retriever.lists[r["prompt_id"]]
        items, ret, rest = head(ranked, scores, excl, o.rerank_k)
        llm = None
        if items and o.fusion != 0.0:
            a, ai, soft = engine.part_a([r])
            toks = [engine.title_tokens(i) for i in items]
            llm = score(engine.model, a[0], ai[0], engine.special.start, engine.special.end, toks,
                        engine.entity_trie, dynamic=o.dynamic, soft=None if soft is None else soft[0])
        final, fused = fusion.rerank(items, ret, llm, rest, o.fusion)
        text = engine.titles.get(final[0], final[0]) if final else ""
        out.append(engine._row(r, text, final, fused, bool(final)))
    return out
