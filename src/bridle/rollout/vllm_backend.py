"""vLLM as the rollout engine of the online methods (`--rollout-backend vllm`), colocated with training: one vLLM
engine per training process on its GPU, the policy's weights pushed into it before each round's sampling (the
policy changed in the round before), and the engine put to sleep (its KV cache freed) while the policy trains.

UNTESTED: Bridle's suite and its developers' machines have no GPU and no vLLM. This module is written against
vLLM's documented offline API (`LLM`, `SamplingParams`, `LLM.sleep` / `wake_up`) and the weight-loading path
TRL's colocated GRPO uses; expect to fix details on first use. The HF sampler (`bridle.rollout.sample`) stays the
default and the fallback. Returns the same `Rollout` as it.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bridle.errors import ConfigError
from bridle.rollout.rollout import Rollout, SamplingSettings
from bridle.rollout.sampling import render_prompt

BACKENDS = ("hf", "vllm")


def check_backend(backend: str, *, lora: bool = False) -> None:
    """Refuse a rollout backend that cannot run here, before any model loads, saying what to do instead."""
    if backend not in BACKENDS:
        raise ConfigError(f"--rollout-backend {backend!r}: use one of {', '.join(BACKENDS)}.")
    if backend == "hf":
        return
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("--rollout-backend vllm needs vLLM (pip install vllm, on Linux with a CUDA GPU). Without "
                          "it, use --rollout-backend hf (the default).")
    if not torch.cuda.is_available():
        raise ConfigError("--rollout-backend vllm needs a CUDA GPU and this machine has none; use --rollout-backend "
                          "hf (the default).")
    if lora:
        raise ConfigError("--rollout-backend vllm with --lora: pushing adapter weights into vLLM is not wired yet; "
                          "train without --lora or use --rollout-backend hf.")


class VLLMSampler:
    """One colocated vLLM engine: `push_weights(policy)`, then `sample(...)`, then `sleep()` while training."""

    def __init__(self, model: str, *, gpu_memory_utilization: float, dtype: str, max_model_len: int,
                 seed: int, sleep_mode: bool) -> None:
        from vllm import LLM

        self.sleep_mode = sleep_mode
        self.llm = LLM(model=model, gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
                       max_model_len=max_model_len, seed=seed, enable_sleep_mode=sleep_mode,
                       logprobs_mode="processed_logprobs")  # log-probs after temperature / top-k, as Bridle's
        self.asleep = False

    def push_weights(self, policy: nn.Module) -> None:
        """Copy the policy's current weights into the engine (wakes it first)."""
        self.wake_up()
        engine_model = self.llm.llm_engine.model_executor.driver_worker.worker.model_runner.model
        engine_model.load_weights((name, tensor.detach()) for name, tensor in policy.state_dict().items())
        self.llm.reset_prefix_cache()

    def wake_up(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def sleep(self) -> None:
        """Free the engine's GPU memory (weights and KV cache) while the policy trains (sleep mode level 1)."""
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def sample(self, tokenizer: Any, prompts: Sequence[Any], *, n: int, settings: SamplingSettings,
               seed: int) -> Rollout:
        """`n` samples per prompt (prompt i's rows, then prompt i+1's), with each sampled token's log-prob."""
        from vllm import SamplingParams

        self.wake_up()
        texts = [render_prompt(p, tokenizer) for p in prompts]
        params = SamplingParams(n=n, temperature=settings.temperature, top_p=settings.top_p,
                                top_k=settings.top_k or -1, max_tokens=settings.max_new_tokens,
                                stop=list(settings.stop) or None, logprobs=0, seed=seed,
                                truncate_prompt_tokens=settings.max_prompt_length or None)
        started = time.perf_counter()
        outputs = self.llm.generate(texts, params, use_tqdm=False)
        out = Rollout([], [], [], [], [], [], [], seconds=0.0)
        for index, request in enumerate(outputs):
            for completion in request.outputs:
                ids = list(completion.token_ids)
                logps = [float(step[token].logprob) for step, token in zip(completion.logprobs or [], ids)]
                out.prompt_ids.append(torch.tensor(request.prompt_token_ids))
                out.response_ids.append(torch.tensor(ids, dtype=torch.long))
                out.token_logps.append(torch.tensor(logps))
                out.token_entropy.append(torch.zeros(len(ids)))  # vLLM does not report it
                out.finished.append(completion.finish_reason == "stop")
                out.texts.append(completion.text)
                out.prompt_index.append(index)
        out.seconds = time.perf_counter() - started
        return out
