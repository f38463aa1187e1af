"""Wiring of the pairwise preference methods (DPO and its family, SimPO, ORPO): each key reaches its objective.

Every test runs the method's own `collate` + `step` on a fixed tiny batch and compares the loss (and its gradient)
with the objective from `bridle.objectives` called by hand on log-probs computed here from the model's full logits
(log_softmax + gather), then checks that the same objective with the key dropped gives a different number, so a
method that ignores the key fails. The reference is a second tiny model (another seed), so π ≠ π_ref and the DPO
margin h is far from 0 (at h = 0 every DPO variant with any ε gives ln 2).
"""

from __future__ import annotations

import pytest
import torch

from bridle import objectives
from bridle.data import TokenizedExample, TokenizedPair, pair_collate
from bridle.methods.dpo import DPO, ORPO, DPOConfig, ORPOConfig, SimPO, SimPOConfig
from bridle.models import tiny_causal_lm, tiny_tokenizer

X = -100
# (prompt ids, chosen completion ids, rejected completion ids); completions end with EOS (2). Lengths differ, so
# summed, per-token and length-normalized forms of each loss all differ.
PAIRS = [([1, 40, 41, 42], [50, 51, 52, 53, 2], [60, 61, 2]),
         ([1, 70, 71], [80, 2], [90, 91, 92, 93, 94, 2]),
         ([1, 100, 101, 102, 103], [110, 111, 112, 2], [120, 121, 2])]


def example(prompt: list[int], completion: list[int]) -> TokenizedExample:
    return TokenizedExample(input_ids=prompt + completion, labels=[X] * len(prompt) + completion)


def pairs() -> list[TokenizedPair]:
    return [TokenizedPair(example(p, c), example(p, r)) for p, c, r in PAIRS]


def hand_logps(model: torch.nn.Module, items: list[TokenizedPair]) -> tuple[torch.Tensor, ...]:
    """Summed completion log-probs and completion lengths of chosen and rejected, (B,) each, from full logits."""
    batch = pair_collate(items, pad_id=2)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    targets = batch["labels"][:, 1:]
    mask = targets != X
    token = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    sums, lengths = (token * mask).sum(-1), mask.sum(-1)
    n = len(items)
    return sums[:n], sums[n:], lengths[:n], lengths[n:]


def grads(loss: torch.Tensor, model: torch.nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], allow_unused=False))


def assert_same_loss_and_grads(got: torch.Tensor, want: torch.Tensor, model: torch.nn.Module) -> None:
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads(got, model), grads(want, model)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    return abs(float(a.detach()) - float(b.detach())) > 1e-3


@pytest.fixture(scope="module")
def reference_logps() -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        chosen, rejected, _, _ = hand_logps(tiny_causal_lm(seed=0), pairs())
    return chosen, rejected


def dpo_setup(**keys):
    """A DPO method whose reference log-probs come from the seed-0 model, the seed-1 policy, and the batch."""
    method = DPO(DPOConfig(reference_cache="none", batch_size=4, **keys), tiny_tokenizer())
    items = pairs()
    method.before_training(tiny_causal_lm(seed=0), items, [])
    return method, tiny_causal_lm(seed=1), method.collate(items), items


def test_dpo_collate_carries_the_reference_logps_of_the_reference_model(reference_logps):
    _, _, batch, _ = dpo_setup()
    torch.testing.assert_close(batch["ref_chosen"], reference_logps[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch["ref_rejected"], reference_logps[1], rtol=1e-5, atol=1e-5)
    assert batch["weight"] == len(PAIRS)  # the loss is a mean over pairs


def test_dpo_step_uses_beta_and_label_smoothing(reference_logps):
    method, policy, batch, items = dpo_setup(loss="sigmoid", beta=2.0, label_smoothing=0.2)
    out = method.step(policy, batch)
    pc, pr, _, _ = hand_logps(policy, items)
    rc, rr = reference_logps
    want, _ = objectives.dpo(pc, pr, rc, rr, beta=2.0, label_smoothing=0.2)
    assert_same_loss_and_grads(out.loss, want, policy)
    h = (pc - rc) - (pr - rr)
    assert float(h.detach().abs().min()) > 0.1  # far from h = 0, where every ε gives ln 2
    assert differs(out.loss, objectives.dpo(pc, pr, rc, rr, beta=2.0)[0])  # ε dropped (plain DPO)
    assert differs(out.loss, objectives.dpo(pc, pr, rc, rr, beta=0.1, label_smoothing=0.2)[0])  # β at its default


def variant_loss(loss: str, pc, pr, rc, rr, lc, lr, *, beta: float, eps: float = 0.0, per_token: bool = False):
    if loss == "sigmoid":
        return objectives.dpo(pc, pr, rc, rr, beta=beta, label_smoothing=eps)[0]
    if loss == "robust":
        return objectives.robust_dpo(pc, pr, rc, rr, beta=beta, label_smoothing=eps)[0]
    if loss == "ipo":
        lengths = dict(chosen_lengths=lc, rejected_lengths=lr) if per_token else {}
        return objectives.ipo(pc, pr, rc, rr, beta=beta, **lengths)[0]
    return objectives.hinge(pc, pr, rc, rr, beta=beta)[0]


@pytest.mark.parametrize(("loss", "eps", "per_token"), [("robust", 0.2, False), ("ipo", 0.0, False),
                                                        ("ipo", 0.0, True), ("hinge", 0.0, False)])
def test_dpo_step_uses_the_loss_variant(reference_logps, loss, eps, per_token):
    method, policy, batch, items = dpo_setup(loss=loss, beta=2.0, label_smoothing=eps, ipo_per_token=per_token)
    out = method.step(policy, batch)
    pc, pr, lc, lr = hand_logps(policy, items)
    rc, rr = reference_logps
    want = variant_loss(loss, pc, pr, rc, rr, lc, lr, beta=2.0, eps=eps, per_token=per_token)
    assert_same_loss_and_grads(out.loss, want, policy)
    assert differs(out.loss, objectives.dpo(pc, pr, rc, rr, beta=2.0)[0])  # --loss ignored: plain DPO
    if loss == "robust":
        assert differs(out.loss, objectives.robust_dpo(pc, pr, rc, rr, beta=2.0, label_smoothing=0.0)[0])
    if loss == "ipo":  # summed and per-token log-ratios give different IPO losses
        other = variant_loss("ipo", pc, pr, rc, rr, lc, lr, beta=2.0, per_token=not per_token)
        assert differs(out.loss, other)


def test_padding_free_dpo_step_equals_the_padded_objective(reference_logps):
    # (prefix sharing, on by default, takes precedence over padding-free rows: off, so this layout is the one used)
    method, policy, batch, items = dpo_setup(loss="sigmoid", beta=2.0, label_smoothing=0.2, padding_free=True,
                                             prefix_sharing=False)
    assert "segment" in batch  # the padding-free layout
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch  # one packed row
    out = method.step(policy, batch)
    pc, pr, _, _ = hand_logps(policy, items)
    want, _ = objectives.dpo(pc, pr, *reference_logps, beta=2.0, label_smoothing=0.2)
    assert_same_loss_and_grads(out.loss, want, policy)


def test_simpo_step_uses_beta_gamma_and_completion_lengths():
    method = SimPO(SimPOConfig(beta=2.5, gamma=0.7), tiny_tokenizer())
    items = pairs()
    policy = tiny_causal_lm(seed=1)
    out = method.step(policy, method.collate(items))
    pc, pr, lc, lr = hand_logps(policy, items)
    assert lc.tolist() == [5, 2, 4] and lr.tolist() == [3, 6, 3]  # completion tokens, EOS included
    want, _ = objectives.simpo(pc, pr, lc, lr, beta=2.5, gamma=0.7)
    assert_same_loss_and_grads(out.loss, want, policy)
    assert differs(out.loss, objectives.simpo(pc, pr, lc, lr, beta=2.0, gamma=0.7)[0])  # β at its default
    assert differs(out.loss, objectives.simpo(pc, pr, lc, lr, beta=2.5, gamma=1.0)[0])  # γ at its default


def test_orpo_step_uses_lambda_and_the_token_mean_nll_of_chosen():
    method = ORPO(ORPOConfig(lam=0.3), tiny_tokenizer())
    items = pairs()
    policy = tiny_causal_lm(seed=1)
    out = method.step(policy, method.collate(items))
    pc, pr, lc, lr = hand_logps(policy, items)
    nll = -pc.sum() / lc.sum()  # token mean over all chosen completion tokens of the batch
    want, _ = objectives.orpo(pc, pr, lc, lr, nll, lam=0.3)
    assert_same_loss_and_grads(out.loss, want, policy)
    assert differs(out.loss, objectives.orpo(pc, pr, lc, lr, nll, lam=0.1)[0])  # λ at its default
    per_sequence_nll = -(pc / lc).mean()  # a mean of per-sequence means weighs short answers more
    assert differs(out.loss, objectives.orpo(pc, pr, lc, lr, per_sequence_nll, lam=0.3)[0])
