"""A corpus: many texts, one per line of an uploaded file (.txt, or .jsonl / .csv with a text column), or the
built-in sample. Parsing is strict and total: a file either becomes a Corpus or raises InputError with what is
wrong, so a bad upload changes nothing."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass

from ..errors import InputError

TEXT_COLUMNS = ("text", "sentence", "prompt", "content")  # the column a .jsonl or .csv file's texts are read from


@dataclass(frozen=True)
class Corpus:
    """Texts in their order; a text's id is its index. `name` says where it came from (file name or "sample")."""

    texts: tuple[str, ...]
    name: str = "corpus"

    @property
    def digest(self) -> str:
        """SHA-256 of the texts (not of the name): the cache key of everything computed on them."""
        h = hashlib.sha256()
        for text in self.texts:
            h.update(text.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Limits:
    """The operator's bounds on an upload."""

    max_bytes: int = 2 << 20
    max_texts: int = 1_000
    max_chars: int = 2_000  # per text (tokens are cut later, to the token limit)


def parse(data: bytes, filename: str, limits: Limits = Limits()) -> tuple[Corpus, int]:
    """(the corpus, how many texts beyond limits.max_texts were left out) from an uploaded file's bytes.

    .txt: one text per non-blank line. .jsonl: one JSON object per line with a string field named as in
    TEXT_COLUMNS (or a bare JSON string). .csv: a header row with one of TEXT_COLUMNS. Raises InputError for
    an empty, binary, non-UTF-8, oversized file, one with a line over limits.max_chars, or without texts."""
    kind = filename.rsplit(".", 1)[-1].lower() if "." in filename else "txt"
    if kind not in ("txt", "jsonl", "csv"):
        raise InputError(f"'{filename}' is not a .txt, .jsonl or .csv file.")
    if len(data) > limits.max_bytes:
        raise InputError(f"the file has {len(data):,} bytes, over this server's limit of {limits.max_bytes:,}.")
    if not data.strip():
        raise InputError("the file is empty: it needs one text per line.")
    if b"\x00" in data:
        raise InputError("the file is binary (it holds NUL bytes), not text: upload a UTF-8 text file.")
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"the file is not UTF-8 text (an invalid byte at position {err.start:,}): save it as "
                         "UTF-8 and upload it again.") from None
    if any(ord(c) < 32 and c not in "\t\n\r\f\v" for c in decoded[:100_000]):
        raise InputError("the file holds control characters, as a binary file does: upload a UTF-8 text file.")
    texts = _texts(decoded, kind)
    for number, text in enumerate(texts, start=1):
        if len(text) > limits.max_chars:
            raise InputError(f"text {number:,} has {len(text):,} characters, over this server's limit of "
                             f"{limits.max_chars:,} per text: one text per line.")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise InputError("the file holds no text: it needs one text per line.")
    left_out = max(0, len(texts) - limits.max_texts)
    return Corpus(tuple(texts[: limits.max_texts]), filename), left_out


def _texts(decoded: str, kind: str) -> list[str]:
    lines = decoded.splitlines()
    if kind == "txt":
        return [line.strip() for line in lines]
    if kind == "jsonl":
        texts = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"line {number:,} is not JSON ({err.msg}).") from None
            if isinstance(item, dict):
                item = next((item[c] for c in TEXT_COLUMNS if isinstance(item.get(c), str)), None)
            if not isinstance(item, str):
                raise InputError(f"line {number:,} has no text: each line needs a string field named "
                                 f"{' or '.join(TEXT_COLUMNS)}.")
            texts.append(item.strip())
        return texts
    try:
        rows = list(csv.reader(io.StringIO(decoded)))
    except csv.Error as err:
        raise InputError(f"the CSV file cannot be read ({err}).") from None
    header = [h.strip().lower() for h in rows[0]] if rows else []
    column = next((header.index(c) for c in TEXT_COLUMNS if c in header), None)
    if column is None:
        raise InputError(f"the CSV file's first row needs a column named {' or '.join(TEXT_COLUMNS)}.")
    return [row[column].strip() for row in rows[1:] if len(row) > column]
