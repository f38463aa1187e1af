"""`AnswerGenerator`: a model loaded once, answering prompts as text. What every data generator (`bridle eval`,
`rlaif`, `constitute`, `redteam`) and the quickstart share, so none of them loads or samples a model its own way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridle.data.chat import Prompt
from bridle.rollout.sampling import generate


class AnswerGenerator:
    """A causal LM and its tokenizer (on the GPU when there is one), answering prompts as the policy would see them
    (the one prompt rule of `bridle.data.chat`)."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "model") -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name

    @classmethod
    def load(cls, model_path: str, *, chat_template: str = "auto", dtype: str = "float32") -> AnswerGenerator:
        """An alias (e.g. smollm2-135m), HF directory, hub id or GGUF file."""
        import torch

        from bridle.models import load_causal_lm, load_tokenizer

        model = load_causal_lm(model_path, dtype=dtype)
        if torch.cuda.is_available():
            model.to("cuda")
        return cls(model, load_tokenizer(model_path, chat_template=chat_template), name=model_path)

    def answers(self, prompts: Sequence[Prompt], *, n: int = 1, max_new_tokens: int = 256, temperature: float = 0.0,
                top_p: float = 1.0, seed: int = 0, batch_size: int = 8, progress: bool = False) -> list[list[str]]:
        """`n` answers per prompt (greedy at temperature 0: n copies of one); the same seed gives the same text."""
        return generate(self.model, self.tokenizer, prompts, n=n, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size, progress=progress)

    def answer(self, prompts: Sequence[Prompt], **settings: Any) -> list[str]:
        """One answer per prompt."""
        return [group[0] for group in self.answers(prompts, n=1, **settings)]
