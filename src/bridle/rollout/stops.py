"""Stop strings: a row ends once its generated text contains one of them. Text is only known after decoding, so this
is the one per-row Python step of sampling; it looks at the last few tokens of unfinished rows only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class StopStrings:
    """Called with (row ids (R,), their generated tokens so far (R, t)): which rows' text now contains a stop string.
    Only the last `window` tokens are decoded (the longest stop string's tokens + 2)."""

    def __init__(self, tokenizer: Any, stop: Sequence[str]) -> None:
        self.tokenizer, self.stop = tokenizer, tuple(stop)
        longest = max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in self.stop)
        self.window = longest + 2

    def __call__(self, rows: Tensor, generated: Tensor) -> Tensor:
        tails = self.tokenizer.batch_decode(generated[:, -self.window:], skip_special_tokens=True)
        return torch.tensor([any(s in text for s in self.stop) for text in tails], dtype=torch.bool,
                            device=generated.device)
