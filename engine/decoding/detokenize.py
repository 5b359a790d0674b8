"""Incremental detokenization: the text each new token adds, without breaking multi-byte characters."""

from __future__ import annotations

from typing import Any


class IncrementalText:
    """Turns a growing list of token ids into text pieces, one call per token.

    Decoding a window that starts a few tokens back keeps the tokenizer's spacing rules right; a
    piece that ends in an incomplete UTF-8 sequence is held back until the next token finishes it.
    """

    def __init__(self, tokenizer: Any, skip_ids: frozenset[int] = frozenset()) -> None:
        self.tokenizer = tokenizer
        self.skip_ids = skip_ids
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0
        self.text = ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        if token_id in self.skip_ids:
            return ""
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            piece = after[len(before) :]
            self.prefix, self.read = self.read, len(self.ids)
            self.text += piece
            return piece
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        rest = self._decode(self.ids[self.prefix :])
        before = self._decode(self.ids[self.prefix : self.read])
        piece = rest[len(before) :] if len(rest) > len(before) else ""
        self.read = len(self.ids)
        self.text += piece
        return piece
