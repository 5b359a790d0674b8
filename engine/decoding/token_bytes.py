"""Tokens that hold part of a UTF-8 character: their bytes (<0xE2><0x80>), for the TUI (instead of U+FFFD) and
for the server's logprobs (OpenAI's `bytes`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from ..results import TokenStep

REPLACEMENT = "\ufffd"
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece byte fallback


def _byte_level_alphabet() -> dict[str, int]:
    """The byte-level BPE alphabet (GPT-2 and most HF tokenizers): one printable character per byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


BYTE_DECODER = _byte_level_alphabet()


class TokenBytes:
    """token id -> the raw bytes it stands for (None for special tokens or when they cannot be known)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.special = set(getattr(tokenizer, "all_special_ids", None) or [])
        self.cache: dict[int, bytes | None] = {}

    def __call__(self, token_id: int) -> bytes | None:
        if token_id not in self.cache:
            self.cache[token_id] = self._lookup(token_id)
        return self.cache[token_id]

    def _lookup(self, token_id: int) -> bytes | None:
        if token_id < 0 or token_id in self.special:
            return None
        try:
            piece = self.tokenizer.convert_ids_to_tokens(token_id)
            text = self.tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        except Exception:  # noqa: BLE001 - an odd tokenizer just shows its text as it is
            return None
        match = _BYTE_TOKEN.fullmatch(piece or "")
        if match:
            return bytes([int(match.group(1), 16)])
        if REPLACEMENT not in text:
            return text.encode("utf-8")
        if piece and all(c in BYTE_DECODER for c in piece):
            return bytes(BYTE_DECODER[c] for c in piece)
        return None


def _sequence_length(lead: int) -> int:
    """How many bytes a UTF-8 sequence starting with this byte has; 0 when it cannot start one."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def split_utf8(chunks: list[bytes | None]) -> list[tuple[str, bool]]:
    """Each chunk's text: a character goes to the chunk holding its last byte; bytes that never form a
    character show as <0xXX> in the chunk that holds them. Returns (text, holds raw bytes) per chunk."""
    out = [""] * len(chunks)
    raw = [False] * len(chunks)
    pending: list[tuple[int, int]] = []  # (chunk index, byte) not yet part of a character

    def emit_raw() -> None:
        index, byte = pending.pop(0)
        out[index] += f"<0x{byte:02X}>"
        raw[index] = True

    def resolve(final: bool) -> None:
        while pending:
            need = _sequence_length(pending[0][1])
            body = [b for _, b in pending[1:need]]
            if need == 0 or any(not 0x80 <= b < 0xC0 for b in body):
                emit_raw()
                continue
            if len(pending) < need:
                if not final:
                    return
                emit_raw()
                continue
            try:
                char = bytes(b for _, b in pending[:need]).decode("utf-8")
            except UnicodeDecodeError:  # overlong forms, surrogates
                emit_raw()
                continue
            out[pending[need - 1][0]] += char
            del pending[:need]

    for i, chunk in enumerate(chunks):
        for byte in chunk or b"":
            pending.append((i, byte))
            resolve(final=False)
    resolve(final=True)
    return list(zip(out, raw))


def readable(data: bytes) -> str:
    """Bytes as text, with any that are not (yet) a whole character written <0xXX>."""
    return split_utf8([data])[0][0]


def display_pieces(steps: Sequence[TokenStep], text_len: int,
                   token_bytes: Callable[[int], bytes | None] | None = None,
                   cut: bool = False) -> list[tuple[str, bool]]:
    """What each step shows in a pane: its text piece (cut at text_len, the text after stop-string
    trimming), except around split characters: a token holding bytes of an incomplete or invalid
    character shows them (<0xE2>) and the token after it loses the U+FFFD they decoded to. cut: the output
    ended on a stop string, so the empty tokens at its end are the trimmed ones, not a character still coming
    (their bytes once showed there as text the output does not hold)."""
    pieces: list[tuple[str, bool]] = []
    remaining = text_len
    for step in steps:
        pieces.append((step.text[: max(remaining, 0)], False))
        remaining -= len(step.text)
    if token_bytes is None:
        return pieces
    start = None
    for i, step in enumerate(steps):
        if step.text == "":
            start = i if start is None else start
            continue
        if REPLACEMENT in step.text and pieces[i][0] == step.text:
            _fix_group(steps, pieces, start if start is not None else i, i + 1, token_bytes)
        start = None
    if start is not None and remaining >= 0 and not cut:  # an incomplete character at the end of the output so far
        _fix_group(steps, pieces, start, len(steps), token_bytes)
    return pieces


def _fix_group(steps: Sequence[TokenStep], pieces: list[tuple[str, bool]], start: int, end: int,
               token_bytes: Callable[[int], bytes | None]) -> None:
    chunks = [token_bytes(s.token_id) for s in steps[start:end]]
    if chunks[-1] is None and REPLACEMENT in steps[end - 1].text:
        return  # the completing token's bytes are unknown: keep the engine's text
    for offset, (text, raw) in enumerate(split_utf8(chunks)):
        if chunks[offset] is not None:
            pieces[start + offset] = (text, raw)
