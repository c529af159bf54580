"""Turns prompt rows into prediction rows with a loaded RecsysLM (see options.mode_of for
the modes). Prompts are tokenized with the masking library, so Part A and its intra ids are
exactly what training saw.

    python -m pytest tests/unit/test_inference.py tests/cli/test_infer.py -q
"""

from __future__ import annotations

from typing import Sequence

from recsys_cli.artifacts.predictions import Prediction
from recsys_cli.data import masking, tokenize
from recsys_cli.data.ratings import parse_rating
from recsys_cli.data.special_tokens import SpecialIds
from recsys_cli.data.templates import NO, YES
from recsys_cli.data.text import normalize_title
from recsys_cli.data.trie import EntityTrie
from recsys_cli.inference import calibrated, candidates, decode
from recsys_cli.inference.options import NO_WORDS, YES_WORDS, InferOptions


class Engine:
    def __init__(
        self,
        model,
        tokenizer,
        opts: InferOptions,
        entity_trie: EntityTrie | None,
        item_trie: EntityTrie | None,
        titles: dict[str, str],
        grounder=None,
        hybrid_rows: dict[str, int] | None = None,
        id_tokens: bool = True,
        retriever=None,
    ):
        self.model, self.tok, self.opts = model, tokenizer, opts
        self.special = SpecialIds.from_tokenizer(tokenizer)
        self.entity_trie, self.item_trie = entity_trie, item_trie
        self.titles, self.grounder = titles, grounder  # data.entities.Grounder (unconstrained mode)
        self.exact_titles = {normalize_title(t) for t in titles.values()}
        self.end_ids = [self.special.end] + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
        self.banned = sorted(set(tokenizer.all_special_ids) - {self.special.end})
        self.yes_ids = sorted({self._first(" " + w) for w in YES_WORDS})
        self.no_ids = sorted({self._first(" " + w) for w in NO_WORDS})
        self._title_tokens: dict[str, list[int]] = {}
        self.retriever = retriever  # inference.retriever.Retriever for the `rerank` mode
        self.listwise = None  # inference.listwise.ListwiseScorer (--item-scoring listwise; listwise.prepare)
        # RSLLM checkpoint (docs/rsllm.md): item id -> recommender row; Part A gets the soft ID tokens
        self.hybrid_rows, self.id_tokens = hybrid_rows, id_tokens

    def _first(self, text: str) -> int:
        return self.tok(text, add_special_tokens=False)["input_ids"][0]

    # --- prompt -> Part A ---------------------------------------------------------------
    def part_a(
        self, rows: Sequence[dict]
    ) -> tuple[list[list[int]], list[list[int]], list[list[tuple[int, int]]] | None]:
        """Part A (prompt + [gM]) token ids and intra ids per row, truncated from the left, and
        the soft ID tokens per row (a hybrid checkpoint; None for a text-only one)."""
        docs = tokenize.tokenize_documents(
            [r["source"] or "" for r in rows], [r.get("source_entities") or [] for r in rows], self.tok
        )
        if self.hybrid_rows is not None:  # the same layout and left cut as training's hybrid_prompt
            from recsys_cli.data.rsllm import hybrid_part_a

            parts = [
                hybrid_part_a(
                    d, self.special, self.hybrid_rows, self.tok.pad_token_id, self.opts.max_prompt_len, self.id_tokens
                )
                for d in docs
            ]
            return [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]
        ids, intra = [], []
        keep = self.opts.max_prompt_len - 2
        for d in docs:
            n = len(d.ids)
            ex = masking.build_example(d.ids, d.entity_spans, [(n, n)], self.special.g_m, self.special, "prompt", None)
            a, ai = ex.input_ids[: ex.part_a_len], ex.intra[: ex.part_a_len]
            if len(a) > keep + 1:
                a, ai = a[:-1][-keep:] + a[-1:], ai[:-1][-keep:] + ai[-1:]
            ids.append(a)
            intra.append(ai)
        return ids, intra, None

    def title_tokens(self, item_id: str) -> list[int]:
        t = self._title_tokens.get(item_id)
        if t is None:
            t = self.tok(" " + (self.titles.get(item_id) or item_id), add_special_tokens=False)["input_ids"]
            self._title_tokens[item_id] = t
        return t

    @staticmethod
    def _row(r: dict, output: str, ranked=None, scores=None, valid=True) -> dict:
        """A predictions row (artifacts/predictions.py): `output` readable text, item ids only in `ranked`."""
        return Prediction.answer(r, output, ranked, scores, valid).as_row()

    # --- modes --------------------------------------------------------------------------
    def run(self, mode: str, rows: list[dict], excluded: list[set]) -> list[dict]:
        import torch

        modes = {
            "candidates": self._candidates,
            "rerank": self._rerank,
            "yesno": self._yesno,
            "items": self._items,
            "rating": self._rating,
            "text": self._text,
        }
        from recsys_cli.modeling.checkpoint import set_merged_scale

        text = self.opts.text_decoding
        # explanation / review are written with text.adapter_scale times each LoRA delta, the rest with it whole
        set_merged_scale(self.model, text.adapter_scale if mode == "text" and text.method != "plain" else 1.0)
        with torch.inference_mode():
            return modes[mode](rows, excluded)

    def _state(self, rows, trie):
        a, ai, soft = self.part_a(rows)
        return decode.prefill(self.model, a, ai, self.special.start, trie, dynamic=self.opts.dynamic, soft=soft)

    def _candidates(self, rows, excluded):
        if self.opts.item_scoring == "listwise":
            from recsys_cli.inference.listwise import candidate_rows

            return candidate_rows(self, rows, excluded)
        out = []
        a, ai, soft = self.part_a(rows)
        cands = [[c for c in r["candidates"] if c not in excl] for r, excl in zip(rows, excluded)]
        toks = [[self.title_tokens(c) for c in cs] for cs in cands]
        scores = calibrated.score_items(self, a, ai, soft, cands, toks)  # every --item-scoring but listwise
        for r, cs, s in zip(rows, cands, scores):
            order = sorted(range(len(cs)), key=lambda i: -s[i])
            ranked = [cs[i] for i in order]
            out.append(
                self._row(
                    r,
                    self.titles.get(ranked[0], ranked[0]) if ranked else "",
                    ranked,
                    [s[i] for i in order],
                    bool(ranked),
                )
            )
        return out

    def _rerank(self, rows, excluded):
        from recsys_cli.inference.rerank import rerank_rows

        return rerank_rows(self, rows, excluded)

    def _yesno(self, rows, excluded):
        a, ai, soft = self.part_a(rows)
        res = candidates.yes_no(self.model, a, ai, self.special.start, self.yes_ids, self.no_ids, soft=soft)
        return [self._row(r, YES if y >= n else NO, None, [y, n], True) for r, (y, n) in zip(rows, res)]

    def _items(self, rows, excluded):
        o = self.opts
        beams = max(o.beams, o.top_k)
        if o.unconstrained:
            st = self._state(rows, self.entity_trie)
            depth = self.item_trie.max_depth + 1 if self.item_trie is not None else o.max_new_tokens
            hyps = decode.beam_search(self.model, st, beams, beams, self.special.end, depth, banned=self.banned)
            return [self._ground(r, h, excl) for r, h, excl in zip(rows, hyps, excluded)]
        st = self._state(rows, self.entity_trie)
        con = decode.Constraint(self.item_trie, self.special.end, renormalize=o.item_scoring == "constrained")
        hyps = decode.beam_search(
            self.model, st, beams, o.top_k, self.special.end, self.item_trie.max_depth + 1, con, excluded
        )
        out = []
        for r, hs, excl in zip(rows, hyps, excluded):
            ranked, scores, seen = [], [], set()
            for s, _, node in hs:
                for iid in self.item_trie.payloads[node]:
                    if iid not in seen and iid not in excl:
                        seen.add(iid)
                        ranked.append(str(iid))
                        scores.append(s)
            ranked, scores = ranked[: o.top_k], scores[: o.top_k]
            text = self.tok.decode(hs[0][1]).strip() if hs else ""
            out.append(self._row(r, text, ranked, scores, bool(ranked)))
        return out

    def _ground(self, r, hyps, excl) -> dict:
        """Free-text hypotheses -> nearest items (MinHash), deduplicated, history dropped."""
        ranked, scores = [], []
        for s, toks, _ in hyps:
            iid = self.grounder.ground_text(self.tok.decode(toks, skip_special_tokens=True).strip())
            if iid is not None and iid not in excl and iid not in ranked:
                ranked.append(iid)
                scores.append(s)
        text = self.tok.decode(hyps[0][1], skip_special_tokens=True).strip() if hyps else ""
        return self._row(
            r, text, ranked[: self.opts.top_k], scores[: self.opts.top_k], normalize_title(text) in self.exact_titles
        )

    def _generate(self, rows, beams: int, max_new: int) -> list[str]:
        st = self._state(rows, self.entity_trie)
        if beams <= 1:
            toks = decode.greedy(self.model, st, self.end_ids, max_new)
        else:
            toks = [
                h[0][1] if h else []
                for h in decode.beam_search(self.model, st, beams, 1, self.special.end, max_new, banned=self.banned)
            ]
        return [self.tok.decode(t, skip_special_tokens=True).strip() for t in toks]

    def _rating(self, rows, excluded):
        if self.opts.rating_scoring != "generate":  # the star tokens' distribution at [START]
            from recsys_cli.inference.rating import rating_rows

            return rating_rows(self, rows)
        texts = self._generate(rows, 1, 8)
        out = []
        for r, text in zip(rows, texts):
            v = parse_rating(text)
            out.append(self._row(r, text if v is None else f"{v:g}", None, None if v is None else [v], v is not None))
        return out

    def _text(self, rows, excluded):
        from recsys_cli.inference.textgen import generate_texts

        texts = generate_texts(self, rows)  # --text-decoding: n-gram blocking, min length, beam (textgen.py)
        return [self._row(r, t, None, None, bool(t)) for r, t in zip(rows, texts)]
