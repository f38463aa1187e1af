"""Wiring of reward modelling: each pair's margin and --center-coef reach `objectives.bradley_terry`.

Rewards by hand are the logits of transformers' own `AutoModelForSequenceClassification` forward on each sequence
alone (no padding), compared with the method's collate + step (padded, or padding-free)."""

from __future__ import annotations

import pytest
import torch

from bridle import objectives
from bridle.data import TokenizedExample, TokenizedPair
from bridle.methods.rm import RewardModelling, RMConfig
from bridle.models import tiny_tokenizer
from bridle.models.reward import load_reward_model

X = -100
# (prompt, chosen, rejected, margin from the data)
PAIRS = [([1, 40, 41, 42], [50, 51, 52, 2], [60, 2], 1.5),
         ([1, 70], [80, 81, 2], [90, 91, 92, 93, 2], 0.0),
         ([1, 100, 101], [110, 2], [120, 121, 2], 3.0)]


def example(prompt: list[int], completion: list[int]) -> TokenizedExample:
    return TokenizedExample(input_ids=prompt + completion, labels=[X] * len(prompt) + completion)


def pairs() -> list[TokenizedPair]:
    return [TokenizedPair(example(p, c), example(p, r), margin=m) for p, c, r, m in PAIRS]


@pytest.fixture
def reward_model(tiny_model_dir):
    return load_reward_model(str(tiny_model_dir), pad_token_id=2)


def hand_rewards(model: torch.nn.Module, side: str) -> torch.Tensor:
    rows = [p + (c if side == "chosen" else r) for p, c, r, _ in PAIRS]
    return torch.cat([model(input_ids=torch.tensor([ids]), use_cache=False).logits[:, 0] for ids in rows])


@pytest.mark.parametrize("padding_free", [False, True])
def test_rm_step_uses_each_pairs_margin_and_the_centering_coefficient(reward_model, padding_free):
    # (prefix sharing, on by default, takes precedence over padding-free rows: off for the padding-free case)
    method = RewardModelling(RMConfig(center_coef=0.2, padding_free=padding_free, prefix_sharing=not padding_free),
                             tiny_tokenizer())
    batch = method.collate(pairs())
    assert batch["weight"] == len(PAIRS)
    assert ("ends" in batch and "owner" not in batch) == padding_free  # the layout under test is the step's
    out = method.step(reward_model, batch)
    chosen, rejected = hand_rewards(reward_model, "chosen"), hand_rewards(reward_model, "rejected")
    margin = torch.tensor([m for *_, m in PAIRS])
    want, _ = objectives.bradley_terry(chosen, rejected, margin=margin, center_coef=0.2)
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-5)
    params = [p for p in reward_model.parameters() if p.requires_grad]
    for a, b in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(want, params, retain_graph=True)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    without_margin = objectives.bradley_terry(chosen, rejected, center_coef=0.2)[0]
    without_centering = objectives.bradley_terry(chosen, rejected, margin=margin)[0]
    assert abs(float(want.detach()) - float(without_margin.detach())) > 0.1
    assert abs(float(want.detach()) - float(without_centering.detach())) > 1e-3
