"""The SFT method's batches: packing changes the layout, never the loss."""

from __future__ import annotations

import torch

from bridle.data import build_sft_examples
from bridle.methods.sft import SFT, SFTConfig, neftune_hook
from bridle.models import tiny_causal_lm, tiny_tokenizer

RECORDS = [{"prompt": [{"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}],
            "completion": [{"role": "assistant", "content": f"It is {2 * i}." + " Indeed." * (i % 4)}]}
           for i in range(7)]


def method(packing: bool) -> SFT:
    return SFT(SFTConfig(packing=packing, max_length=200), tiny_tokenizer())


def test_packed_loss_equals_unpacked_loss_on_the_same_examples():
    model = tiny_causal_lm(seed=1)
    examples, _ = build_sft_examples(RECORDS, tiny_tokenizer(), max_length=200)
    unpacked, packed = method(False), method(True)
    from bridle.data import pack_examples

    rows = pack_examples(examples, max_length=400)
    assert len(rows) < len(examples)  # several examples share a row
    batch_u, batch_p = unpacked.collate(examples), packed.collate(rows)
    assert "attention_mask" not in batch_p and batch_u["weight"] == batch_p["weight"]
    assert batch_p["num_tokens"] == batch_u["num_tokens"] == sum(len(e.input_ids) for e in examples)
    loss_u = unpacked.step(model, batch_u).loss
    loss_p = packed.step(model, batch_p).loss
    torch.testing.assert_close(loss_p, loss_u, rtol=1e-5, atol=1e-5)


def test_packed_logits_match_each_example_run_alone():
    model = tiny_causal_lm(seed=2)
    examples, _ = build_sft_examples(RECORDS[:3], tiny_tokenizer(), max_length=200)
    from bridle.data import pack_examples, packed_collate

    batch = packed_collate(pack_examples(examples, max_length=600), pad_id=0)
    assert batch["input_ids"].shape[0] == 1
    packed_logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
    for a, b in zip(starts, starts[1:]):
        alone = model(input_ids=batch["input_ids"][:, a:b], use_cache=False).logits[0]
        torch.testing.assert_close(packed_logits[a:b], alone, rtol=1e-4, atol=1e-4)


def test_neftune_noise_only_in_training_and_bounded_by_alpha_over_sqrt_ld():
    emb = torch.nn.Embedding(10, 8)
    emb.register_forward_hook(neftune_hook(4.0))
    ids = torch.arange(5).unsqueeze(0)
    emb.eval()
    clean = emb(ids)
    emb.train()
    noisy = emb(ids)
    bound = 4.0 / (5 * 8) ** 0.5
    assert 0 < (noisy - clean).abs().max() <= bound
