"""`--prefix-sharing` in reward modelling: one row per pair, and each reward read where the unshared path reads it
(the last non-pad token of the sequence), so rewards, loss and gradient equal transformers' own forward on each
sequence alone, on four architectures, padded and padding-free."""

from __future__ import annotations

import pytest
import torch

from bridle import objectives
from bridle.data import TokenizedExample, TokenizedPair
from bridle.methods.rm import RewardModelling, RMConfig
from bridle.methods.sharing import chosen_first
from bridle.models.reward import shared_reward_scores
from bridle.models.tiny import TINY_ARCHITECTURES, tiny_architecture, tiny_tokenizer

X = -100
# (prompt, chosen, rejected, margin). Responses end with EOS (2) = pad, so the score is read at the token before it;
# pair 2's rejected is EOS alone, so its score is read at the last PROMPT token, inside the shared prefix; pair 3's
# prompts differ (truncated differently).
PAIRS = [([1, 40, 41, 42, 43, 44], [50, 51, 52, 2], [60, 2], 1.5),
         ([1, 70, 71, 72], [80, 81, 2], [2], 0.0),
         ([1, 100, 101], [110, 2], [120, 121, 2], 3.0)]


def example(prompt: list[int], completion: list[int]) -> TokenizedExample:
    return TokenizedExample(prompt + completion, [X] * len(prompt) + completion)


def pairs() -> list[TokenizedPair]:
    items = [TokenizedPair(example(p, c), example(p, r), margin=m) for p, c, r, m in PAIRS]
    items.append(TokenizedPair(example([1, 7, 8, 9], [30, 2]), example([7, 8, 9], [31, 32, 2])))
    return items


def hand_rewards(model: torch.nn.Module, items: list[TokenizedPair]) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' sequence-classification forward on each sequence alone: (chosen, rejected) rewards."""
    def one(e: TokenizedExample) -> torch.Tensor:
        return model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0, 0]
    return torch.stack([one(p.chosen) for p in items]), torch.stack([one(p.rejected) for p in items])


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "padding-free"])
def test_shared_rewards_and_loss_equal_the_unshared_ones(arch: str, padding_free: bool) -> None:
    model = tiny_architecture(arch, reward=True)
    items = pairs()
    method = RewardModelling(RMConfig(center_coef=0.1, padding_free=padding_free), tiny_tokenizer())
    method.prepare_model(model)
    assert method.share_prefix
    batch = method.collate(items)
    assert batch["input_ids"].shape[0] == (1 if padding_free else len(items) + 1)  # the last pair: 2 plain rows
    chosen, rejected = hand_rewards(model, items)
    rewards = chosen_first(shared_reward_scores(model, batch))
    torch.testing.assert_close(rewards, torch.cat([chosen, rejected]), rtol=1e-5, atol=1e-5)
    out = method.step(model, batch)
    margin = torch.tensor([p.margin for p in items])
    want, _ = objectives.bradley_terry(chosen, rejected, margin=margin, center_coef=0.1)
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-5)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(want, params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_key_switches_the_layout_and_keeps_the_loss() -> None:
    model = tiny_architecture("llama", reward=True)
    items = pairs()
    on = RewardModelling(RMConfig(prefix_sharing=True), tiny_tokenizer())
    off = RewardModelling(RMConfig(prefix_sharing=False), tiny_tokenizer())
    shared, plain = on.collate(items), off.collate(items)
    assert shared["input_ids"].shape[0] == len(items) + 1  # a row per pair; the last pair shares nothing: 2 rows
    assert plain["input_ids"].shape[0] == 2 * len(items)
    assert shared["num_tokens"] == plain["num_tokens"]  # throughput counts the data's tokens either way
    with torch.no_grad():
        torch.testing.assert_close(on.step(model, shared).loss, off.step(model, plain).loss, rtol=1e-5, atol=1e-6)


def test_score_inside_the_shared_prefix_is_read_there() -> None:
    batch = RewardModelling(RMConfig(), tiny_tokenizer()).collate(pairs()[1:2])
    # row: prompt [1, 70, 71, 72], chosen suffix [80, 81, 2], rejected suffix [2]; rejected = prompt + EOS is scored
    # at its last non-pad token, the prompt's last (index 3); chosen at 81 (index 5)
    assert batch["ends"].tolist() == [5, 3]
