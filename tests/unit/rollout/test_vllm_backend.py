"""`--rollout-backend`: hf is the default and always works; vllm is refused with what to do where it cannot run (no
vLLM, no GPU, LoRA). The vLLM path itself is untested here (no GPU)."""

from __future__ import annotations

import importlib.util

import pytest

from bridle.errors import ConfigError
from bridle.methods.grpo import GRPO, GRPOConfig
from bridle.rollout import vllm_backend
from bridle.rollout.vllm_backend import check_backend


def test_hf_backend_is_the_default_and_needs_nothing():
    assert GRPOConfig().rollout_backend == "hf"
    check_backend("hf")


def test_unknown_backend_names_the_choices():
    with pytest.raises(ConfigError, match="use one of hf, vllm"):
        check_backend("sglang")


def test_vllm_without_vllm_installed_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install vllm.*--rollout-backend hf"):
        check_backend("vllm")


def test_vllm_without_a_gpu_falls_back_to_hf_by_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(vllm_backend.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        check_backend("vllm")


def test_vllm_with_lora_is_refused(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(vllm_backend.torch.cuda, "is_available", lambda: True)
    with pytest.raises(ConfigError, match="--lora"):
        check_backend("vllm", lora=True)


def test_the_key_reaches_the_online_methods_config_check(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    method = GRPO(GRPOConfig(reward="math_exact_match", rollout_backend="vllm"), tokenizer=None)
    with pytest.raises(ConfigError, match="--rollout-backend vllm needs vLLM"):
        method.check_config()
    GRPO(GRPOConfig(reward="math_exact_match"), tokenizer=None).check_config()  # hf: fine
