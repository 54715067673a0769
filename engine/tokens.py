"""Readable token strings: the text each token stands for, without 'Ġ'/'▁' artefacts."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """Inverse of GPT-2's byte -> printable-character table used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _bytes_repr(raw_token: str) -> str:
    """A byte-level token that is only part of a UTF-8 character, shown as its bytes (e.g. '\\xf0\\x9f')."""
    table = _byte_of_char()
    if not all(c in table for c in raw_token):
        return raw_token
    return bytes(table[c] for c in raw_token).decode("utf-8", errors="backslashreplace")


def readable_tokens(tokenizer, token_ids: list[int]) -> list[str]:
    """One string per token id: decoded text (leading spaces kept), specials as written ('[CLS]')."""
    out = []
    for token_id in token_ids:
        text = tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
        if "\ufffd" in text:
            text = _bytes_repr(tokenizer.convert_ids_to_tokens(token_id))
        out.append(text)
    return out
