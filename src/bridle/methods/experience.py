"""Experience: one sampled response with everything its policy update reads, and the batching around it.

Tensors are response-aligned: position t is response token t (the token predicted from prompt + response[:t]).
A batch right-pads prompt+response rows for the forward pass and the response-aligned tensors to (B, R); with
`share_prefix` the forward pass instead holds each distinct prompt of the batch once, its samples after it
(`bridle.data.shared_prefix`), and the response-aligned tensors are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bridle.data.shared_prefix import shared_prefix_collate
from bridle.data.tokenize import IGNORE_INDEX, TokenizedExample
from bridle.ops import SelectedLogps, causal_lm_logps, to_response
from bridle.ops.shared_prefix import shared_prefix_token_logps

PER_TOKEN = ("old_logps", "ref_logps", "advantages", "returns", "old_values")


@dataclass
class Experience:
    """One response. advantages is (r,) per token (PPO) or a 0-dim tensor shared by every token (GRPO, RLOO)."""

    prompt_ids: Tensor
    response_ids: Tensor
    score: float = 0.0
    sample_logps: Tensor | None = None  # log π of each token as recorded while sampling
    old_logps: Tensor | None = None  # π_old for the PPO ratio (None: the update's own detached log-probs)
    ref_logps: Tensor | None = None
    advantages: Tensor | None = None
    returns: Tensor | None = None
    old_values: Tensor | None = None

    @property
    def length(self) -> int:
        return int(self.response_ids.numel())


def _pad(rows: Sequence[Tensor], width: int, fill: float = 0.0) -> Tensor:
    out = torch.full((len(rows), width), fill, dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, :row.numel()] = row
    return out


def shared_experience(items: Sequence[Experience], *, pad_id: int) -> dict[str, Tensor]:
    """The forward-pass part of a prefix-shared experience batch: items with equal prompt ids form one group (in
    order of first appearance), and the trained tokens (`sources`, `targets`, ...) are put back in item order,
    response position ascending: the row-major order of `response_mask`, so `to_response` places them."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, e in enumerate(items):
        groups.setdefault(tuple(e.prompt_ids.tolist()), []).append(i)
    members = [i for group in groups.values() for i in group]
    examples = [[TokenizedExample([*prompt, *items[i].response_ids.tolist()],
                                  [IGNORE_INDEX] * len(prompt) + items[i].response_ids.tolist()) for i in group]
                for prompt, group in groups.items()]
    batch = shared_prefix_collate(examples, pad_id=pad_id)
    item = torch.tensor(members)[batch["token_sequence"]]
    order = torch.argsort(item * (batch["where"].shape[1] + 1) + batch["token_position"])
    for name in ("sources", "targets", "token_sequence", "token_position"):
        batch[name] = batch[name][order]
    return batch


def collate_experience(items: Sequence[Experience], *, pad_id: int, weight: str = "tokens",
                       share_prefix: bool = False) -> dict[str, Any]:
    """Right-padded model inputs (input_ids, attention_mask, labels: (B, P+R)), `response_mask` (B, R) and each
    per-token field present on the items as (B, R); scalar advantages become (B,). `weight` is what the loss
    averages over: "tokens" (response tokens) or "sequences" (rows). `share_prefix`: the model inputs are a
    prefix-shared batch instead (`shared_experience`); everything response-aligned is unchanged."""
    lengths = [len(e.prompt_ids) + e.length for e in items]
    width, resp_width = max(lengths), max(e.length for e in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    response_mask = torch.zeros((len(items), resp_width), dtype=torch.bool)
    for i, e in enumerate(items):
        p, n = len(e.prompt_ids), lengths[i]
        input_ids[i, :n] = torch.cat([e.prompt_ids, e.response_ids])
        labels[i, p:n] = e.response_ids
        attention_mask[i, :n] = 1  # from lengths: the pad id is EOS, which ends responses
        response_mask[i, :e.length] = True
    batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                             "response_mask": response_mask, "scores": torch.tensor([e.score for e in items]),
                             "num_tokens": sum(lengths)}
    if share_prefix:
        for name in ("input_ids", "attention_mask", "labels"):
            del batch[name]
        batch.update({k: v for k, v in shared_experience(items, pad_id=pad_id).items() if k != "num_tokens"})
    for name in PER_TOKEN:
        values = [getattr(e, name) for e in items]
        if values[0] is None:
            continue
        if values[0].dim() == 0:
            batch[name] = torch.stack(values).float()
        else:
            batch[name] = _pad([v.float() for v in values], resp_width)
    batch["weight"] = int(response_mask.sum()) if weight == "tokens" else len(items)
    return batch


def response_logps(model: nn.Module, batch: dict[str, Any], *, temperature: float = 1.0,
                   return_hidden: bool = False) -> tuple[Tensor, SelectedLogps]:
    """(B, R) log-probs of the response tokens at the sampling temperature, and the raw selection (hidden states
    for value heads when asked; for a prefix-shared batch its `mask` is `response_mask`)."""
    if "sources" in batch:
        token_logps, hidden = shared_prefix_token_logps(model, batch, temperature=temperature,
                                                        return_hidden=return_hidden)
        return to_response(token_logps, batch["response_mask"]), SelectedLogps(token_logps, batch["response_mask"],
                                                                               hidden)
    selected = causal_lm_logps(model, batch["input_ids"], batch["labels"], attention_mask=batch["attention_mask"],
                               temperature=temperature, return_hidden=return_hidden)
    return to_response(selected.token_logps, batch["response_mask"]), selected


@torch.no_grad()
def per_token_pass(items: Sequence[Experience], fn: Callable[[dict[str, Any]], Tensor], *, pad_id: int,
                   batch_size: int, device: torch.device, share_prefix: bool = False) -> list[Tensor]:
    """Run `fn(batch) -> (B, R)` over items in micro-batches; returns each item's (r,) slice, on the CPU. A round's
    items come prompt by prompt, so with `share_prefix` each micro-batch holds each prompt once."""
    out: list[Tensor] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        batch = collate_experience(chunk, pad_id=pad_id, share_prefix=share_prefix)
        batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        values = fn(batch).float().cpu()
        out.extend(values[i, :e.length] for i, e in enumerate(chunk))
    return out
