from __future__ import annotations

import pytest
import torch

from bridle.models import tiny_causal_lm, tiny_tokenizer


def test_tiny_model_is_deterministic_per_seed() -> None:
    a, b, c = tiny_causal_lm(seed=3), tiny_causal_lm(seed=3), tiny_causal_lm(seed=4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_tiny_model_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_causal_lm(seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_model_matches_tokenizer_ids() -> None:
    tokenizer, model = tiny_tokenizer(), tiny_causal_lm()
    assert model.config.vocab_size >= len(tokenizer)
    assert model.config.eos_token_id == model.config.pad_token_id == tokenizer.eos_token_id
    assert model.config._attn_implementation == "sdpa"
    assert model.lm_head.weight is model.model.embed_tokens.weight
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 512)


def test_tiny_model_rejects_vocab_smaller_than_tokenizer() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        tiny_causal_lm(vocab_size=100)


def test_tokenizer_pad_is_eos_like_smollm2() -> None:
    tokenizer = tiny_tokenizer()
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.bos_token is None
    assert tokenizer.model_max_length == 2048 and tokenizer.padding_side == "right"
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]


def test_tokenizer_round_trips_any_text_and_keeps_specials_whole() -> None:
    tokenizer = tiny_tokenizer()
    text = "Héllo wörld ✓ 東京\n\ttabs"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer("a<|im_end|>")["input_ids"][-1] == tokenizer.eos_token_id


def test_chat_template_renders_smollm2_format() -> None:
    tokenizer = tiny_tokenizer()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
