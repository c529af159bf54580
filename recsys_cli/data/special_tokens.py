"""The five GLM tokens every stage adds to the tokenizer, and their ids.

    python -c "from recsys_cli.data.special_tokens import SPECIAL_TOKENS; print(SPECIAL_TOKENS)"

`[M]` masks an entity-level span, `[sM]` a sentence, `[gM]` a document (and a prompt's
answer); `[START]` opens a Part B span and `[END]` closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recsys_cli.errors import RecsysError

SPECIAL_TOKENS = ("[M]", "[sM]", "[gM]", "[START]", "[END]")


@dataclass(frozen=True)
class SpecialIds:
    m: int
    s_m: int
    g_m: int
    start: int
    end: int

    @classmethod
    def from_tokenizer(cls, tok: Any) -> "SpecialIds":
        """Ids of the 5 special tokens; they must have been added (see `add_special_tokens`)."""
        ids = tok.convert_tokens_to_ids(list(SPECIAL_TOKENS))
        back = tok.convert_ids_to_tokens(ids)
        missing = [t for t, i, b in zip(SPECIAL_TOKENS, ids, back) if i is None or b != t]
        if missing:
            raise RecsysError(
                f"tokenizer lacks the special tokens {missing}; call special_tokens.add_special_tokens(tokenizer)"
            )
        return cls(*ids)

    def mask_for(self, level: str) -> int:
        return {"entity": self.m, "sentence": self.s_m, "document": self.g_m, "prompt": self.g_m}[level]

    def as_dict(self) -> dict[str, int]:
        return dict(zip(SPECIAL_TOKENS, (self.m, self.s_m, self.g_m, self.start, self.end)))


def add_special_tokens(tokenizer: Any) -> SpecialIds:
    """Add the 5 special tokens (idempotent) the one way every stage does it; return their ids."""
    have = set(tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))))
    if not set(SPECIAL_TOKENS) <= have:
        tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return SpecialIds.from_tokenizer(tokenizer)
