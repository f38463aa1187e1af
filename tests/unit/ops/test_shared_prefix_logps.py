"""Prefix-shared batches compute exactly what the plain (unshared) layout computes, on four architectures.

The expected values come from the plain path: each sequence alone through `causal_lm_logps` (one row, no padding,
the causal shift), an independent computation from the shared row's mask, positions and gather.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from bridle.data.shared_prefix import shared_prefix_collate
from bridle.data.tokenize import TokenizedExample
from bridle.models.tiny import TINY_ARCHITECTURES, tiny_architecture
from bridle.ops import causal_lm_logps
from bridle.ops.shared_prefix import (
    sequence_sums,
    shared_prefix_problem,
    shared_prefix_token_logps,
)

X = -100


def plain_token_grid(values: Tensor, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Per-token `values` (N,) → (S, L-1) in the shifted plain layout of `causal_lm_logps` (column t-1 holds token
    t), 0 elsewhere, and the (S, L-1) bool mask of trained tokens."""
    shape = (int(batch["num_sequences"]), batch["where"].shape[1] - 1)
    grid = values.new_zeros(shape)
    grid[batch["token_sequence"], batch["token_position"]] = values
    mask = torch.zeros(shape, dtype=torch.bool, device=values.device)
    mask[batch["token_sequence"], batch["token_position"]] = True
    return grid, mask


def example(prompt: list[int], completion: list[int]) -> TokenizedExample:
    return TokenizedExample(prompt + completion, [X] * len(prompt) + completion)


# A pair, a group of three, a pair whose prompts differ (truncated differently: nothing shared), a pair whose
# responses start alike (the common prefix runs into the responses) and a one-token response.
GROUPS = [
    [example([1, 40, 41, 42, 43, 44], [50, 51, 2]), example([1, 40, 41, 42, 43, 44], [60, 61, 62, 63, 2])],
    [example([1, 70, 71], [80, 81, 2]), example([1, 70, 71], [90, 2]), example([1, 70, 71], [95, 96, 97, 98, 2])],
    [example([7, 8, 9], [30, 31, 2]), example([1, 7, 8, 9], [32, 2])],
    [example([1, 100, 101], [110, 111, 112, 2]), example([1, 100, 101], [110, 111, 120, 2])],
    [example([1, 5, 6, 7, 8], [2]), example([1, 5, 6, 7, 8], [140, 141, 2])],
]


def plain_token_logps(model: torch.nn.Module, groups: list[list[TokenizedExample]]) -> list[torch.Tensor]:
    """Each sequence alone through the plain path: its trained tokens' log-probs, in group order."""
    return [causal_lm_logps(model, torch.tensor([e.input_ids]), torch.tensor([e.labels])).token_logps
            for group in groups for e in group]


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("one_row", [False, True], ids=["padded", "padding-free"])
def test_shared_token_logps_equal_plain_ones(arch: str, one_row: bool) -> None:
    model = tiny_architecture(arch)
    assert shared_prefix_problem(model.get_decoder(), max_length=64) is None
    batch = shared_prefix_collate(GROUPS, pad_id=2, one_row=one_row)
    with torch.no_grad():
        got, _ = shared_prefix_token_logps(model, batch, chunk_size=4)
        want = plain_token_logps(model, GROUPS)
    torch.testing.assert_close(got, torch.cat(want), atol=1e-5, rtol=1e-5)
    sums, counts = sequence_sums(got, batch)
    torch.testing.assert_close(sums, torch.stack([w.sum() for w in want]), atol=1e-5, rtol=1e-5)
    assert counts.tolist() == [len(w) for w in want]


def test_gradients_equal_plain_ones() -> None:
    model = tiny_architecture("qwen2")
    batch = shared_prefix_collate(GROUPS[:2], pad_id=2)
    got, _ = shared_prefix_token_logps(model, batch)
    (got * torch.linspace(0.5, 1.5, len(got))).sum().backward()
    shared = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    want = torch.cat(plain_token_logps(model, GROUPS[:2]))
    (want * torch.linspace(0.5, 1.5, len(want))).sum().backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(shared[name], param.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_plain_token_grid_matches_causal_lm_logps_per_row() -> None:
    model = tiny_architecture("llama")
    group = GROUPS[0]
    batch = shared_prefix_collate([group], pad_id=2)
    with torch.no_grad():
        grid, mask = plain_token_grid(shared_prefix_token_logps(model, batch)[0], batch)
        for s, e in enumerate(group):
            plain = causal_lm_logps(model, torch.tensor([e.input_ids]), torch.tensor([e.labels]))
            n = len(e.input_ids) - 1
            torch.testing.assert_close(grid[s, :n], plain.per_row()[0], atol=1e-5, rtol=1e-5)
            assert mask[s, :n].equal(plain.mask[0])
            assert not mask[s, n:].any()


def test_flash_attention_and_short_sliding_windows_fall_back() -> None:
    model = tiny_architecture("mistral", attn_implementation="eager")
    body = model.get_decoder()
    assert shared_prefix_problem(body, max_length=64) is None  # eager takes the additive mask
    body.config._attn_implementation = "flash_attention_2"
    assert "flash_attention_2" in shared_prefix_problem(body, max_length=64)
    body.config._attn_implementation = "eager"
    body.config.sliding_window = 16
    assert "sliding-window" in shared_prefix_problem(body, max_length=64)


def test_a_model_that_ignores_the_mask_is_caught_by_the_probe() -> None:
    model = tiny_architecture("llama")
    body = model.get_decoder()
    forward = body.forward

    def ignoring_mask(*args, attention_mask=None, **kwargs):  # noqa: ANN002, ANN003, ANN202
        return forward(*args, **kwargs)

    body.forward = ignoring_mask
    assert "differ" in shared_prefix_problem(body, max_length=64)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_bf16_weights_and_bf16_autocast_take_the_mask(attn: str) -> None:
    """The mask follows the weights' dtype (a bf16 model gets a bf16 mask); under autocast it stays fp32 and the
    kernels cast it. Either way the result matches the plain path at bf16 precision."""
    for model, autocast in ((tiny_architecture("llama", attn_implementation=attn).to(torch.bfloat16), False),
                            (tiny_architecture("qwen2", attn_implementation=attn), True)):
        batch = shared_prefix_collate(GROUPS[:2], pad_id=2)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            got, _ = shared_prefix_token_logps(model, batch)
            want = torch.cat(plain_token_logps(model, GROUPS[:2]))
        torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
