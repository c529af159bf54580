"""The entity pool: items, categories, brands and feature values as whole units.

    recsys build-entities --data runs/toys
    python -c "from recsys_cli.data.entities import build_pool; print(len(build_pool('runs/toys')))"

* `build_pool` collects one row per distinct entity from items.parquet (titles, categories,
  brands) and from the entity spans of corpus.parquet / prompts.parquet (features, ...).
* Token ids are the *in-context* ids: the tokens of `" " + text` (entities in documents
  almost always follow a space, and a BPE tokenizer gives " Gloom" and "Gloom" different
  ids). `in_context_agreement` measures how often that matches the tokens of real spans.
* Item titles get MinHash signatures (character 3-grams) saved beside the pool; they find
  near-duplicate titles (reported, items stay apart) and ground free text to an item id.
* `pool_trie` gives the entity trie (data/trie.py) of a textualized directory for a
  tokenizer: from entities.parquet when it was built with that tokenizer, else from the
  pool computed in memory the way `build-entities` computes it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.data.text import norm_key
from recsys_cli.data.tokenize import encode_batch, tokenize_documents
from recsys_cli.data.trie import load_entity_trie, trie_from_rows
from recsys_cli.errors import InputError, RecsysError

MINHASH_SEED = 1
MINHASH_PERM = 64
SHINGLE = 3
_NON_WORD = re.compile(r"[^0-9a-z]+")


# --- pool -----------------------------------------------------------------------------------


def _add(pool: dict[str, dict], entity_id: str, kind: str, text: str, item_id: str | None) -> None:
    row = pool.get(entity_id)
    if row is None:
        row = pool[entity_id] = {"entity_id": entity_id, "kind": kind, "text": text, "item_ids": set()}
    if item_id is not None:
        row["item_ids"].add(item_id)


def _span_entities(data_dir: Path) -> list[tuple[str, str, str]]:
    """(entity_id, kind, text of its first occurrence) for every entity id used in the entity
    spans of corpus.parquet and prompts.parquet (vectorised: millions of spans on full data)."""
    frames = []
    sources = [
        (schemas.CORPUS, [("text", "entities")]),
        (schemas.PROMPTS, [("source", "source_entities"), ("target", "target_entities")]),
    ]
    for name, pairs in sources:
        path = Path(data_dir) / name
        if not path.is_file():
            continue
        for text_col, ent_col in pairs:
            lf = (
                pl.scan_parquet(path)
                .select(pl.col(text_col).alias("doc"), pl.col(ent_col).alias("e"))
                .with_row_index("row")
            )
            first = (
                lf.select("row", "e")
                .explode("e")
                .drop_nulls("e")
                .unnest("e")
                .filter(pl.col("kind").is_in(list(schemas.ENTITY_KINDS)))
                .unique("entity_id", keep="first", maintain_order=True)
            )
            f = first.join(lf.select("row", "doc"), on="row", how="left").select(
                "entity_id",
                "kind",
                pl.col("doc").str.slice(pl.col("start"), pl.col("end") - pl.col("start")).alias("text"),
            )
            frames.append(f)
    if not frames:
        return []
    try:
        out = pl.concat(frames).unique("entity_id", keep="first", maintain_order=True).collect()
    except Exception as exc:  # corrupt file or columns not as the contract says
        raise RecsysError(
            f"{data_dir}: cannot read entity spans of corpus/prompts ({type(exc).__name__}: {exc})", exit_code=2
        )
    return list(out.iter_rows())


def build_pool(data_dir: Path) -> list[dict[str, Any]]:
    """Distinct entities (entity_id, kind, text, item_ids) sorted by kind then id."""
    items = read_artifact(data_dir, schemas.ITEMS, ["item_id", "title", "categories", "brand"])
    pool: dict[str, dict] = {}
    for item_id, title, cats, brand in items.iter_rows():
        if title:
            _add(pool, f"item:{item_id}", "item", title, item_id)
        for cat in cats or []:
            if cat:
                _add(pool, f"category:{norm_key(cat)}", "category", cat, item_id)
        if brand:
            _add(pool, f"brand:{norm_key(brand)}", "brand", brand, item_id)
    for eid, kind, text in _span_entities(data_dir):
        if eid not in pool:
            _add(pool, eid, kind, text, None)
    order = {k: i for i, k in enumerate(schemas.ENTITY_KINDS)}
    rows = sorted(pool.values(), key=lambda r: (order.get(r["kind"], 99), r["entity_id"]))
    for r in rows:
        r["item_ids"] = sorted(r["item_ids"])
    return rows


def in_context_ids(texts: Sequence[str], tokenizer: Any) -> list[list[int]]:
    """Token ids of each entity as it appears after a space in running text."""
    return encode_batch(tokenizer, [" " + t for t in texts])[0] if texts else []


def in_context_agreement(
    data_dir: Path, token_ids: dict[str, list[int]], tokenizer: Any, max_docs: int = 200
) -> dict[str, int]:
    """Compare stored ids with the tokens entity spans really get inside the first
    `max_docs` corpus documents: {'spans': checked, 'match': equal}."""
    path = Path(data_dir) / schemas.CORPUS
    if not path.is_file():
        return {"spans": 0, "match": 0}
    df = pl.scan_parquet(path).select("text", "entities").head(max_docs).collect()
    texts = df["text"].to_list()
    ents = [sorted(e or [], key=lambda x: (x["start"], x["end"])) for e in df["entities"].to_list()]
    checked = match = 0
    for doc, es in zip(tokenize_documents(texts, ents, tokenizer), ents):
        if len(doc.entity_spans) != len(es):  # overlapping spans were dropped; skip the doc
            continue
        for (s, t), e in zip(doc.entity_spans, es):
            want = token_ids.get(e["entity_id"])
            if want is not None:
                checked += 1
                match += doc.ids[s:t] == list(want)
    return {"spans": checked, "match": match}


# --- MinHash --------------------------------------------------------------------------------


def shingles(text: str, k: int = SHINGLE) -> list[bytes]:
    """Character k-grams of the lower-cased alphanumeric words (joined by one space)."""
    norm = _NON_WORD.sub(" ", text.lower()).strip()
    if len(norm) <= k:
        return [norm.encode()] if norm else []
    return [norm[i : i + k].encode() for i in range(len(norm) - k + 1)]


class MinHasher:
    """datasketch MinHash with permutations built once (creating them per text is slow)."""

    def __init__(self, num_perm: int = MINHASH_PERM, seed: int = MINHASH_SEED):
        from datasketch import MinHash  # scipy (~0.4 s): only when signatures are computed

        self._cls = MinHash
        self.num_perm, self.seed = num_perm, seed
        template = MinHash(num_perm=num_perm, seed=seed)
        self._perm, self.scheme = template.permutations, template.scheme

    def minhash(self, text: str):
        m = self._cls(num_perm=self.num_perm, seed=self.seed, permutations=self._perm, scheme=self.scheme)
        sh = shingles(text)
        if sh:
            m.update_batch(sh)
        return m

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """[N, num_perm] uint64 signatures (one MinHash object, cleared between texts)."""
        out = np.empty((len(texts), self.num_perm), dtype=np.uint64)
        m = self._cls(num_perm=self.num_perm, seed=self.seed, permutations=self._perm, scheme=self.scheme)
        for i, t in enumerate(texts):
            m.clear()
            sh = shingles(t)
            if sh:
                m.update_batch(sh)
            out[i] = m.hashvalues
        return out


def near_duplicate_clusters(
    sigs: np.ndarray, threshold: float, num_perm: int, seed: int = MINHASH_SEED
) -> list[list[int]]:
    """Groups (row indices, each sorted, >= 2 members) of titles whose estimated Jaccard
    similarity reaches `threshold`, found with MinHash LSH and joined transitively."""
    from datasketch import LeanMinHash, MinHashLSH  # scipy: only here, like MinHasher

    # candidates from a looser LSH (better recall near the threshold), verified on signatures
    lsh = MinHashLSH(threshold=max(0.1, 0.75 * threshold), num_perm=num_perm)
    hashes = [LeanMinHash(seed=seed, hashvalues=s, scheme="affine32") for s in sigs]
    for i, h in enumerate(hashes):
        lsh.insert(i, h)
    parent = list(range(len(hashes)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, h in enumerate(hashes):
        for j in lsh.query(h):
            if j != i and np.mean(sigs[i] == sigs[j]) >= threshold:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(hashes)):
        groups.setdefault(find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


class Grounder:
    """Free text -> item id, with the saved MinHash signatures (exact title match first)."""

    def __init__(self, item_ids: list[str], texts: list[str], sigs: np.ndarray, seed: int = MINHASH_SEED):
        self.item_ids, self.texts, self.sigs = item_ids, texts, sigs
        self.hasher = MinHasher(sigs.shape[1] if sigs.size else MINHASH_PERM, seed)
        self._exact: dict[str, str] = {}
        for iid, t in zip(item_ids, texts):
            self._exact.setdefault(_NON_WORD.sub(" ", t.lower()).strip(), iid)

    @classmethod
    def load(cls, data_dir: Path) -> "Grounder":
        df = read_artifact(data_dir, schemas.ENTITIES_MINHASH)
        sigs = np.array(df["signature"].to_list(), dtype=np.uint64).reshape(len(df), -1)
        return cls(df["item_id"].to_list(), df["text"].to_list(), sigs)

    def ground_text(self, text: str, min_similarity: float = 0.0) -> str | None:
        """The item whose title is most similar to `text` (None below `min_similarity`)."""
        hit = self._exact.get(_NON_WORD.sub(" ", text.lower()).strip())
        if hit is not None:
            return hit
        if not len(self.item_ids) or not shingles(text):
            return None
        q = self.hasher.minhash(text).hashvalues
        sim = (self.sigs == q).mean(axis=1)  # [N] estimated Jaccard
        best = int(np.argmax(sim))
        return self.item_ids[best] if sim[best] >= min_similarity else None


_GROUNDERS: dict[str, Grounder] = {}


def ground_text(text: str, data_dir: Path | str, min_similarity: float = 0.0) -> str | None:
    """`Grounder.load(data_dir).ground_text(text)`, with the grounder cached per directory."""
    key = str(Path(data_dir).resolve())
    if key not in _GROUNDERS:
        _GROUNDERS[key] = Grounder.load(Path(data_dir))
    return _GROUNDERS[key].ground_text(text, min_similarity)


# --- the pool as a trie -------------------------------------------------------------------


def check_pool_tokenizer(data_dir: Path, tokenizer: Any, sample: int = 50) -> None:
    """entities.parquet must hold this tokenizer's ids: a pool built for another model makes
    the trie and the intra positions meaningless. Checks a sample of rows."""
    path = Path(data_dir) / schemas.ENTITIES
    df = read_artifact(Path(data_dir), schemas.ENTITIES, columns=["text", "token_ids"]).head(sample)
    if df.height == 0:
        return
    vocab = len(tokenizer)
    texts, toks = df["text"].to_list(), df["token_ids"].to_list()
    for row, t in enumerate(toks):
        if t and max(t) >= vocab:
            raise InputError.at(
                path,
                f"row {row + 1}",
                f"token id {max(t)} is outside the tokenizer's vocabulary ({vocab}); rebuild with `recsys "
                "build-entities --model` set to the checkpoint's base model",
            )
    agree = sum(list(a) == list(b) for a, b in zip(in_context_ids(texts, tokenizer), toks))
    if agree < 0.5 * len(toks):
        raise InputError.at(
            path,
            None,
            f"token_ids do not match this tokenizer ({agree}/{len(toks)} sampled entities agree); rebuild with "
            "`recsys build-entities --model` set to the checkpoint's base model",
        )


def pool_trie(data_dir: Path, tokenizer: Any, kinds: Sequence[str] | None = None):
    """The entity trie of `data_dir` for `tokenizer`: entities.parquet when present (checked
    against the tokenizer), else the pool `build-entities` would write, computed in memory."""
    if (Path(data_dir) / schemas.ENTITIES).is_file():
        check_pool_tokenizer(data_dir, tokenizer)
        return load_entity_trie(data_dir, kinds, len(tokenizer))
    rows = [r for r in build_pool(data_dir) if kinds is None or r["kind"] in kinds]
    ids = in_context_ids([r["text"] for r in rows], tokenizer)
    return trie_from_rows(
        ((r["entity_id"], r["kind"], t, r["item_ids"]) for r, t in zip(rows, ids)),
        items_only=list(kinds or []) == ["item"],
    )
