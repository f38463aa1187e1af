"""Tiny random models and a byte-level tokenizer: fast, deterministic, offline stand-ins for tests and CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from bridle.models.atomic import atomic_directory

# Same ids and names as SmolLM2, so code that works here meets the same traps there (pad == eos).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS_TOKEN = "<|im_end|>"
EOS_ID = 2

SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A real fast tokenizer, built offline: byte-level BPE (256 byte symbols, no merges) + chat specials.

    eos == pad == `<|im_end|>` like SmolLM2, so loss masks that drop pad tokens are tested against that trap.
    """
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=None,
        bos_token=None,
        model_max_length=2048,
        padding_side="right",
    )
    tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    return tokenizer


def tiny_causal_lm(
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 1024,
    seed: int = 0,
    tie_word_embeddings: bool = True,
) -> PreTrainedModel:
    """A small random Llama (GQA, tied embeddings like SmolLM2); the same seed gives the same weights."""
    needed = len(SPECIAL_TOKENS) + 256
    if vocab_size < needed:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the tiny tokenizer ({needed} tokens)")
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        attention_dropout=0.0,
        bos_token_id=None,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
        use_cache=True,
    )
    # fork_rng: seeding must not disturb the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.pad_token_id = EOS_ID
    model.generation_config.bos_token_id = None
    return model.eval()


TINY_ARCHITECTURES = ("llama", "qwen2", "mistral", "gpt2")


def tiny_architecture(name: str, *, seed: int = 0, vocab_size: int = 512, reward: bool = False,
                      attn_implementation: str = "sdpa") -> PreTrainedModel:
    """A small random model of one of `TINY_ARCHITECTURES`, fp32, eval mode: Llama, Qwen2 (q/k/v biases), Mistral
    and GPT-2 (absolute learned positions, not rotary). `reward`: the 1-label sequence-classification model instead
    of the causal LM (pad id = the tiny tokenizer's). For tests that must hold across architectures."""
    common = dict(vocab_size=vocab_size, pad_token_id=EOS_ID, eos_token_id=EOS_ID, bos_token_id=None)
    rotary = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, max_position_embeddings=1024, attention_dropout=0.0)
    configs = {
        "llama": lambda: LlamaConfig(**common, **rotary),
        "qwen2": lambda: Qwen2Config(**common, **rotary),
        "mistral": lambda: MistralConfig(**common, **rotary, sliding_window=None),
        "gpt2": lambda: GPT2Config(**common, n_embd=64, n_layer=2, n_head=4, n_positions=1024, resid_pdrop=0.0,
                                   embd_pdrop=0.0, attn_pdrop=0.0),
    }
    if name not in configs:
        raise ValueError(f"unknown tiny architecture {name!r}; one of {TINY_ARCHITECTURES}")
    config = configs[name]()
    if reward:
        config.num_labels = 1
    auto = AutoModelForSequenceClassification if reward else AutoModelForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config, attn_implementation=attn_implementation, dtype=torch.float32)
    return model.eval()


def save_tiny_model(path: str | Path, **kwargs: Any) -> Path:
    """Write a tiny model + tokenizer as a HF directory (atomic); kwargs go to `tiny_causal_lm`."""
    path = Path(path).expanduser()
    model = tiny_causal_lm(**kwargs)
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp)
        tiny_tokenizer().save_pretrained(tmp)
    return path
