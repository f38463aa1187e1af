"""`--judge SPEC` for every command: which judge, on which backend.

    local[:MODEL]      an LLM judge on a local causal LM (default: the embedded smollm2-135m)
    endpoint[:MODEL]   an LLM judge on an OpenAI-compatible endpoint (URL and key from the environment)
    rm:DIR             a `bridle rm` reward model
    rule:NAME          a verifier: a built-in name, module:function or file.py:function

`build_backend` gives the LLM backend alone (for classifiers and graders); `build_judge` a pairwise `Judge`.
An endpoint's answers are cached on disk (`judge_cache_dir()`, keyed by the whole request: model, prompt, settings),
so rerunning a command costs no requests and an interrupted one asks only for the rest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bridle.errors import ConfigError
from bridle.feedback.judges import Judge

JUDGE_HINT = ("--judge is one of: local[:MODEL] (an LLM judge on a local model, default the embedded "
              "smollm2-135m), endpoint[:MODEL] (an OpenAI-compatible endpoint: BRIDLE_JUDGE_BASE_URL or "
              "OPENAI_BASE_URL, key in BRIDLE_JUDGE_API_KEY or OPENAI_API_KEY), rm:DIR (a reward model), "
              "rule:NAME (a built-in rule or module:function / file.py:function).")
LLM_KINDS = ("local", "endpoint")


def is_llm_spec(spec: str) -> bool:
    return spec.partition(":")[0] in LLM_KINDS


def judge_cache_dir() -> Path:
    """$BRIDLE_JUDGE_CACHE, else judge-cache/ in Bridle's cache folder (beside the converted embedded models)."""
    from bridle.models.embedded import cache_dir

    return Path(os.environ.get("BRIDLE_JUDGE_CACHE") or cache_dir() / "judge-cache")


def build_backend(spec: str, *, batch_size: int = 8, progress: bool = False, cache: bool = True) -> Any:
    """The LLM backend of a local[:MODEL] or endpoint[:MODEL] spec; an endpoint's answers cached unless `cache` is
    False (a local judge is deterministic and needs no cache)."""
    kind, _, arg = spec.partition(":")
    if kind == "local":
        from bridle.feedback.judge_backends import DEFAULT_JUDGE_MODEL, LocalLMBackend

        return LocalLMBackend.load(arg or DEFAULT_JUDGE_MODEL, batch_size=batch_size)
    if kind == "endpoint":
        from bridle.feedback.judge_backends import EndpointBackend

        return EndpointBackend(model=arg or None, progress=progress, cache_dir=judge_cache_dir() if cache else None)
    raise ConfigError(f"judge {spec!r} is not an LLM judge: use local, local:MODEL (alias, HF directory or hub id), "
                      "endpoint or endpoint:MODEL.")


def build_judge(spec: str, *, batch_size: int = 8, template: str | None = None, progress: bool = False) -> Judge:
    """The pairwise judge named by `--judge`: local[:MODEL], endpoint[:MODEL], rm:DIR or rule:NAME."""
    from bridle.feedback.judges import PairwiseJudge, RewardModelJudge, RuleJudge

    kind, _, arg = spec.partition(":")
    if kind in LLM_KINDS:
        return PairwiseJudge(build_backend(spec, batch_size=batch_size, progress=progress), template)
    if kind == "rm" and arg:
        return RewardModelJudge(arg, batch_size=batch_size)
    if kind == "rule" and arg:
        return RuleJudge(arg)
    raise ConfigError(f"unknown judge {spec!r}. {JUDGE_HINT}")
