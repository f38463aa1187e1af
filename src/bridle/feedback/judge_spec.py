"""`--judge SPEC` for every command: which judge, on which backend.

    local[:MODEL]      an LLM judge on a local causal LM (default: the embedded smollm2-135m)
    endpoint[:MODEL]   an LLM judge on an OpenAI-compatible endpoint (URL and key from the environment)
    rm:DIR             a `bridle rm` reward model
    rule:NAME          a verifier: a built-in name, module:function or file.py:function

`build_backend` gives the LLM backend alone (for classifiers and graders); `build_judge` a pairwise `Judge`.
"""

from __future__ import annotations

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


def build_backend(spec: str, *, batch_size: int = 8, progress: bool = False) -> Any:
    """The LLM backend of a local[:MODEL] or endpoint[:MODEL] spec."""
    kind, _, arg = spec.partition(":")
    if kind == "local":
        from bridle.feedback.judge_backends import DEFAULT_JUDGE_MODEL, LocalLMBackend

        return LocalLMBackend.load(arg or DEFAULT_JUDGE_MODEL, batch_size=batch_size)
    if kind == "endpoint":
        from bridle.feedback.judge_backends import EndpointBackend

        return EndpointBackend(model=arg or None, progress=progress)
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
