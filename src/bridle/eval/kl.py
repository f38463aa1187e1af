"""How far a model moved from its reference, measured on its own answers.

For an answer y the model wrote to prompt x, the sequence log-ratio is

    r(x, y) = log π(y | x) − log π_ref(y | x) = Σ_t [log π(y_t | x, y_<t) − log π_ref(y_t | x, y_<t)]

and its mean over answers sampled from π is KL(π ‖ π_ref) summed over the sequence (the estimator PPO's KL penalty
uses, k1). Answers decoded greedily are not samples from π, so at temperature 0 the mean is the log-ratio of the
model's most likely answers, not a KL; `bridle eval` says which it reports. Both models score the same token ids:
each (prompt, answer) is encoded once by the one prompt rule (`bridle.data.chat`), with the model's tokenizer, and
the reference's tokenizer must give the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridle.data.chat import Prompt
from bridle.errors import ConfigError


def encode_answers(tokenizer: Any, prompts: Sequence[Prompt], answers: Sequence[str], *, max_length: int = 2048
                   ) -> list[Any]:
    """Each (prompt, answer) as token ids with the answer's labels (the prompt masked), by the one prompt rule."""
    from bridle.data.tokenize import tokenize_sft

    return [tokenize_sft({"prompt": p, "completion": a}, tokenizer, max_length=max_length)
            for p, a in zip(prompts, answers)]


def sequence_log_ratios(model_path: str, reference_path: str, prompts: Sequence[Prompt], answers: Sequence[str], *,
                        chat_template: str = "auto", max_length: int = 2048, batch_size: int = 8) -> list[float]:
    """r(x, y) of each (prompt, answer) for the model at `model_path` against the one at `reference_path`: the
    same ids (encoded with the model's tokenizer and chat template) scored by each, one model loaded at a time."""
    import torch

    from bridle.methods.reference import sequence_logps
    from bridle.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(model_path, chat_template=chat_template)
    reference_tokenizer = load_tokenizer(reference_path, chat_template=chat_template)
    probe = [f"{p}\n{a}" for p, a in zip(prompts[:4], answers[:4])]
    if [tokenizer(t)["input_ids"] for t in probe] != [reference_tokenizer(t)["input_ids"] for t in probe]:
        raise ConfigError(f"--kl-reference {reference_path}: its tokenizer splits text differently from "
                          f"{model_path}'s, so the two models' log-probs of an answer cannot be compared token by "
                          "token. Use the model's own starting point (same tokenizer) as the reference.")
    examples = encode_answers(tokenizer, prompts, answers, max_length=max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    logps = []
    for path in (model_path, reference_path):
        model = load_causal_lm(path)
        if torch.cuda.is_available():
            model.to("cuda")
        logps.append(sequence_logps(model.eval(), examples, pad_id=pad_id, batch_size=batch_size).tolist())
        del model
    return [m - r for m, r in zip(logps[0], logps[1])]
