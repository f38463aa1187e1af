"""`--prefix-sharing` in RRHF: one row per prompt holding it once and its K responses after it; the step's loss and
gradient equal the unshared step's (the key off: one padded row per response), on four architectures."""

from __future__ import annotations

import pytest
import torch

from bridle.data import TokenizedExample, TokenizedRanked
from bridle.methods.rrhf import RRHF, RRHFConfig
from bridle.models.tiny import TINY_ARCHITECTURES, tiny_architecture, tiny_tokenizer

X = -100
# Three responses to the first prompt, two to the second (its third slot is padding).
PROMPTS = [([1, 40, 41, 42, 43], [([50, 51, 2], 0.5), ([60, 2], 2.0), ([70, 71, 72, 73, 2], 1.0)]),
           ([1, 90, 91, 92], [([100, 101, 102, 2], -1.0), ([110, 2], 3.0)])]


def items() -> list[TokenizedRanked]:
    return [TokenizedRanked([TokenizedExample(p + c, [X] * len(p) + c) for c, _ in responses],
                            [s for _, s in responses]) for p, responses in PROMPTS]


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_shared_rrhf_loss_and_gradient_equal_the_unshared_ones(arch: str) -> None:
    model = tiny_architecture(arch)
    on = RRHF(RRHFConfig(sft_weight=0.3, prefix_sharing=True), tiny_tokenizer())
    off = RRHF(RRHFConfig(sft_weight=0.3, prefix_sharing=False), tiny_tokenizer())
    shared, plain = on.collate(items()), off.collate(items())
    assert shared["input_ids"].shape[0] == len(PROMPTS)
    assert plain["input_ids"].shape[0] == sum(len(r) for _, r in PROMPTS)
    got, want = on.step(model, shared).loss, off.step(model, plain).loss
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(got, params), torch.autograd.grad(want, params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
