"""`--prefix-sharing` in the pairwise preference methods and their reference pre-pass: the key switches the batch
layout (one row per pair instead of two), and the step's loss, its gradient and the reference log-probs equal the
unshared computation (the same method with the key off), on four architectures and in the padding-free layout.
"""

from __future__ import annotations

import pytest
import torch

from bridle.data import TokenizedExample, TokenizedPair
from bridle.methods.dpo import DPO, ORPO, DPOConfig, ORPOConfig, SimPO, SimPOConfig
from bridle.methods.reference import sequence_logps, shared_sequence_logps
from bridle.models.tiny import TINY_ARCHITECTURES, tiny_architecture, tiny_tokenizer

X = -100
# (prompt, chosen, rejected): prompts longer than the responses, as in hh-rlhf; the third pair's prompts differ
# (truncated differently), the fourth's responses start alike.
PAIRS = [([1, 40, 41, 42, 43, 44, 45], [50, 51, 52, 2], [60, 61, 2], None),
         ([1, 70, 71, 72, 73], [80, 2], [90, 91, 92, 93, 2], None),
         ([1, 100, 101, 102, 103, 104], [110, 111, 2], [120, 2], [100, 101, 102, 103, 104]),
         ([1, 130, 131, 132], [140, 141, 142, 2], [140, 141, 150, 2], None)]


def example(prompt: list[int], completion: list[int]) -> TokenizedExample:
    return TokenizedExample(prompt + completion, [X] * len(prompt) + completion)


def pairs() -> list[TokenizedPair]:
    return [TokenizedPair(example(p, c), example(other or p, r)) for p, c, r, other in PAIRS]


def step_loss(method_cls, config_cls, model, **keys):
    method = method_cls(config_cls(reference_cache="none", batch_size=4, **keys), tiny_tokenizer())
    items = pairs()
    method.before_training(tiny_architecture(model.config.model_type, seed=1), items, [])
    batch = method.collate(items)
    return method.step(model, batch).loss, batch


def grads(loss: torch.Tensor, model: torch.nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


def test_the_key_switches_the_layout() -> None:
    model = tiny_architecture("llama")
    _, shared = step_loss(DPO, DPOConfig, model, prefix_sharing=True)
    _, plain = step_loss(DPO, DPOConfig, model, prefix_sharing=False)
    assert shared["input_ids"].shape[0] == len(PAIRS) + 1  # a row per pair; pair 3 shares nothing: 2 rows
    assert plain["input_ids"].shape[0] == 2 * len(PAIRS)
    assert int((shared["owner"] >= 0).sum()) < int(plain["attention_mask"].sum())
    assert shared["num_tokens"] == int(plain["num_tokens"])  # throughput counts the data's tokens either way


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_dpo_loss_and_gradient_equal_the_unshared_ones(arch: str) -> None:
    model = tiny_architecture(arch)
    got, _ = step_loss(DPO, DPOConfig, model, beta=0.5, prefix_sharing=True)
    want, _ = step_loss(DPO, DPOConfig, model, beta=0.5, prefix_sharing=False)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert abs(float(want.detach()) - 0.6931) > 1e-3  # policy ≠ reference, so the loss depends on the log-probs
    for a, b in zip(grads(got, model), grads(want, model)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("method_cls", "config_cls", "keys"), [
    (DPO, DPOConfig, {"loss": "ipo", "ipo_per_token": True}), (SimPO, SimPOConfig, {}), (ORPO, ORPOConfig, {})])
@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "padding-free"])
def test_family_losses_equal_the_unshared_ones(method_cls, config_cls, keys, padding_free: bool) -> None:
    model = tiny_architecture("qwen2")
    got, batch = step_loss(method_cls, config_cls, model, prefix_sharing=True, padding_free=padding_free, **keys)
    want, _ = step_loss(method_cls, config_cls, model, prefix_sharing=False, **keys)
    assert batch["input_ids"].shape[0] == (1 if padding_free else len(PAIRS) + 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads(got, model), grads(want, model)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_shared_reference_pass_equals_the_plain_one(arch: str) -> None:
    model = tiny_architecture(arch)
    sequences = [s for p in pairs() for s in (p.chosen, p.rejected)]
    plain = sequence_logps(model, sequences, pad_id=2, batch_size=3)
    shared = shared_sequence_logps(model, sequences, group_size=2, pad_id=2, batch_size=3)
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)


def test_before_training_uses_the_shared_reference_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import bridle.methods.reference as reference

    calls = []
    real = reference.shared_sequence_logps
    monkeypatch.setattr(reference, "shared_sequence_logps", lambda *a, **k: calls.append(k) or real(*a, **k))
    step_loss(DPO, DPOConfig, tiny_architecture("llama"), prefix_sharing=True)
    assert [c["group_size"] for c in calls] == [2]
    step_loss(DPO, DPOConfig, tiny_architecture("llama"), prefix_sharing=False)
    assert len(calls) == 1


def test_a_kernel_without_mask_support_falls_back_with_one_notice(capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_architecture("llama")
    model.config._attn_implementation = "flash_attention_2"  # as if loaded so; the probe refuses before running it
    method = DPO(DPOConfig(reference_cache="none"), tiny_tokenizer())
    method.prepare_model(model)
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and notice[0].startswith("prefix sharing off: attention implementation")
    assert not method.share_prefix
    assert "sources" not in method.collate([TokenizedPair(p.chosen, p.rejected, 0.0, 0.0, 0.0) for p in pairs()])
