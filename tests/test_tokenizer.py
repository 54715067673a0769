"""The engine's tokenizer (tokenizers directly) gives exactly what transformers' fast tokenizer gives."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from engine import loading

TEXTS = ["The capital of France is", "  two  spaces\tand a tab\nnewline", "Unbelievably, the mole 🦔 dug!",
         "<b>bold</b> $x^2$ **md**", "東京 مرحبا e\u0301 zero\u200bwidth \x00nul", "x" * 300 + " end"]


@pytest.mark.parametrize("fixture", ["smollm", "minilm"])
def test_same_ids_offsets_and_decoding_as_transformers(fixture, request):
    model = request.getfixturevalue(fixture)
    reference = AutoTokenizer.from_pretrained(loading.resolve(model.config.name, lambda f, m: None))
    for text in TEXTS:
        ours = model.tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        theirs = reference(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        assert ours["input_ids"] == theirs["input_ids"], text
        assert [tuple(o) for o in ours["offset_mapping"]] == [tuple(o) for o in theirs["offset_mapping"]], text
        assert ours["special_tokens_mask"] == theirs["special_tokens_mask"], text
        for token_id in ours["input_ids"]:
            expected = reference.decode([token_id], clean_up_tokenization_spaces=False)
            assert model.tokenizer.decode([token_id]) == expected
            assert model.tokenizer.convert_ids_to_tokens(token_id) == reference.convert_ids_to_tokens(token_id)
    assert len(model.tokenizer) == len(reference)
    # every token transformers calls special; tokenizer.json may mark more (SmolLM2's chat tokens)
    assert set(reference.all_special_ids) <= set(model.tokenizer.all_special_ids)


def test_minilm_is_neither_padded_nor_cut_to_128(minilm):
    ids = minilm.tokenizer("word " * 200)["input_ids"]  # tokenizer.json asks for padding and truncation at 128
    assert len(ids) == 202
