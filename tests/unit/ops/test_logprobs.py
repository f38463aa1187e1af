import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bridle.ops import causal_lm_logps, head_token_logps, logits_token_logps


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64)
    return LlamaForCausalLM(config)


def test_head_token_logps_matches_log_softmax_on_full_logits_for_any_chunk_size():
    torch.manual_seed(0)
    hidden, head = torch.randn(13, 8), torch.nn.Linear(8, 11, bias=True)
    targets = torch.randint(0, 11, (13,))
    expected = torch.log_softmax(head(hidden), -1)[torch.arange(13), targets]
    for chunk in (1, 4, 13, 100):
        assert torch.allclose(head_token_logps(hidden, head, targets, chunk_size=chunk), expected, atol=1e-6)


def test_causal_lm_logps_equals_full_logits_path_in_value_and_gradient():
    model = tiny_llama()
    ids = torch.randint(0, 97, (3, 12))
    labels = ids.clone()
    labels[:, :4] = -100
    labels[2, 9:] = -100
    selected = causal_lm_logps(model, ids, labels, chunk_size=5)
    mask = labels[:, 1:] != -100
    full = logits_token_logps(model(ids).logits[:, :-1], ids[:, 1:])
    assert selected.token_logps.shape == (int(mask.sum()),)
    assert torch.allclose(selected.token_logps, full[mask], atol=1e-5)
    selected.token_logps.sum().backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    full[mask].sum().backward()
    for name, param in model.named_parameters():
        assert torch.allclose(ours[name], param.grad, atol=1e-5), name


def test_row_sums_add_up_selected_token_logps_per_row():
    model = tiny_llama()
    ids = torch.randint(0, 97, (2, 6))
    labels = ids.clone()
    labels[0, :3] = -100
    selected = causal_lm_logps(model, ids, labels)
    per_row = selected.per_row()
    assert per_row.shape == (2, 5)
    assert per_row[0, :2].eq(0).all()  # positions predicting masked labels contribute nothing
    assert torch.allclose(selected.row_sums(), per_row.sum(-1))
