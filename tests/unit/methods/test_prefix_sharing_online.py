"""`--prefix-sharing` in GRPO and RLOO: the samples of one prompt in a micro-batch hold that prompt once. Per-token
log-probs of each sample (at the sampling temperature), the π_old / reference passes and the step's loss and
gradient equal the unshared computation (the key off), on four architectures; items of several prompts may come in
any order (update mini-batches are shuffled), and every response-aligned tensor stays in item order."""

from __future__ import annotations

import pytest
import torch

from bridle.methods.experience import Experience, collate_experience, per_token_pass, response_logps
from bridle.methods.grpo import GRPO, RLOO, GRPOConfig, RLOOConfig
from bridle.models.tiny import TINY_ARCHITECTURES, tiny_architecture, tiny_tokenizer

PROMPT_A, PROMPT_B = [1, 40, 41, 42, 43, 44], [1, 60, 61, 62]
# shuffled as an update mini-batch is: A, B, A, A, B; one response is EOS alone, two start alike
SAMPLES = [(PROMPT_A, [50, 51, 2]), (PROMPT_B, [70, 71, 72, 2]), (PROMPT_A, [2]), (PROMPT_A, [50, 52, 53, 54, 2]),
           (PROMPT_B, [80, 2])]
ADVANTAGES = [1.0, -0.5, 0.8, -1.2, 0.3]


def experiences() -> list[Experience]:
    items = []
    for (prompt, response), advantage in zip(SAMPLES, ADVANTAGES):
        n = len(response)
        offsets = torch.linspace(-0.3, 0.3, n)
        items.append(Experience(prompt_ids=torch.tensor(prompt), response_ids=torch.tensor(response),
                                sample_logps=torch.zeros(n), old_logps=-2.0 + offsets, ref_logps=-2.5 - offsets,
                                advantages=torch.tensor(advantage)))
    return items


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_shared_response_logps_equal_the_unshared_ones_in_item_order(arch: str) -> None:
    model = tiny_architecture(arch)
    items = experiences()
    shared = collate_experience(items, pad_id=2, share_prefix=True)
    plain = collate_experience(items, pad_id=2)
    assert shared["input_ids"].shape[0] == 2  # one row per distinct prompt
    with torch.no_grad():
        got, selected = response_logps(model, shared, temperature=0.7, return_hidden=True)
        want, plain_selected = response_logps(model, plain, temperature=0.7, return_hidden=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got[plain["response_mask"]].ne(0).all()
    torch.testing.assert_close(selected.hidden, plain_selected.hidden, rtol=1e-4, atol=1e-5)


def test_token_pass_is_the_same_shared_or_not() -> None:
    model = tiny_architecture("gpt2")
    items = experiences()

    def fn(batch: dict) -> torch.Tensor:
        return response_logps(model, batch)[0]

    shared = per_token_pass(items, fn, pad_id=2, batch_size=3, device=torch.device("cpu"), share_prefix=True)
    plain = per_token_pass(items, fn, pad_id=2, batch_size=3, device=torch.device("cpu"))
    for a, b in zip(shared, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def group_method(name: str, sharing: bool) -> GRPO | RLOO:
    keys = dict(reward="math_exact_match", num_samples=2, prompts_per_rollout=2, batch_size=5, grad_accum=1,
                temperature=0.7, clip_eps=0.1, prefix_sharing=sharing)
    if name == "grpo":
        return GRPO(GRPOConfig(beta=0.3, **keys), tiny_tokenizer())
    return RLOO(RLOOConfig(**keys), tiny_tokenizer())


@pytest.mark.parametrize("name", ["grpo", "rloo"])
@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
def test_group_step_loss_and_gradient_equal_the_unshared_ones(name: str, arch: str) -> None:
    model = tiny_architecture(arch)
    on, off = group_method(name, True), group_method(name, False)
    shared, plain = on.collate(experiences()), off.collate(experiences())
    assert "sources" in shared and "sources" not in plain  # the key switches the layout
    got, want = on.step(model, shared).loss, off.step(model, plain).loss
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(got, params), torch.autograd.grad(want, params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
