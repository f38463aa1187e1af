"""Per-token log-probabilities without materializing full-vocabulary logits for the whole batch.

An LM head over SmolLM2's 49k vocabulary turns 1,024 positions into 200 MB of fp32 logits, and most objectives
need the log-prob of one token per position, and only on completion positions. So we run the decoder body once,
keep the hidden states of the positions the loss reads, and push them through the head a chunk at a time. Each
chunk is recomputed in backward (activation checkpointing), so at most one chunk of logits is ever alive.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK = 512


def _chunk_logps(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, temperature: float = 1.0
                 ) -> Tensor:
    logits = F.linear(hidden, weight, bias).float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def head_token_logps(hidden: Tensor, head: nn.Module, targets: Tensor, *, chunk_size: int = DEFAULT_CHUNK,
                     temperature: float = 1.0) -> Tensor:
    """log softmax(head(hidden) / temperature)[target] for each row. hidden: (N, H); targets: (N,). Returns (N,)
    fp32. Online RL scores samples at the temperature they were drawn with (so π_old is the sampling policy)."""
    weight = head.weight
    bias = getattr(head, "bias", None)
    pieces = []
    for start in range(0, hidden.shape[0], chunk_size):
        h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
            pieces.append(checkpoint(_chunk_logps, h, weight, bias, t, temperature, use_reentrant=False))
        else:
            pieces.append(_chunk_logps(h, weight, bias, t, temperature))
    if not pieces:
        return hidden.new_zeros(0, dtype=torch.float32)
    return torch.cat(pieces)


def logits_token_logps(logits: Tensor, targets: Tensor) -> Tensor:
    """Reference path on full logits: (..., V) and (...) → (...). Used for models with custom heads and in tests."""
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


@dataclass
class SelectedLogps:
    """Log-probs of the target tokens at the positions a loss reads.

    token_logps: (N,) for the N selected positions, in row-major order. mask: (B, T-1) bool, which shifted
    positions were selected, so `scatter_to_rows` can rebuild (B, T-1) or per-sequence sums.
    """

    token_logps: Tensor
    mask: Tensor
    hidden: Tensor | None = None  # (N, H) decoder states at the selected positions, when asked for (value heads)

    def per_row(self) -> Tensor:
        """(B, T-1) token log-probs, 0 where not selected."""
        out = self.token_logps.new_zeros(self.mask.shape)
        out[self.mask] = self.token_logps
        return out

    def row_sums(self) -> Tensor:
        """(B,) summed log-probs per row."""
        return self.per_row().sum(-1)


def _uses_plain_head(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    special = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")
    return not any(getattr(config, name, None) for name in special)


def causal_lm_logps(model: nn.Module, input_ids: Tensor, labels: Tensor, *, attention_mask: Tensor | None = None,
                    position_ids: Tensor | None = None, chunk_size: int = DEFAULT_CHUNK, temperature: float = 1.0,
                    return_hidden: bool = False) -> SelectedLogps:
    """Target log-probs of a causal LM where `labels` (B, T) is not -100, after the causal shift.

    Only positions whose label counts reach the LM head. Models whose head does more than a linear map (logit
    soft-capping, scaling) take the full-logits path instead. `return_hidden` also keeps the decoder's last hidden
    states at those positions (a value head reads them), at no extra pass.
    """
    targets = labels[:, 1:]
    mask = targets != -100
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
              "use_cache": False}
    if _uses_plain_head(model) and hasattr(model, "get_decoder"):
        selected = model.get_decoder()(**kwargs).last_hidden_state[:, :-1][mask]
        logps = head_token_logps(selected, model.get_output_embeddings(), targets[mask], chunk_size=chunk_size,
                                 temperature=temperature)
    else:
        out = model(**kwargs, output_hidden_states=return_hidden)
        logps = logits_token_logps(out.logits[:, :-1][mask] / temperature, targets[mask])
        selected = out.hidden_states[-1][:, :-1][mask] if return_hidden else None
    return SelectedLogps(logps, mask, selected if return_hidden else None)


def gathered_token_logps(model: nn.Module, input_ids: Tensor, sources: Tensor, targets: Tensor, *,
                         attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                         chunk_size: int = DEFAULT_CHUNK, temperature: float = 1.0, return_hidden: bool = False
                         ) -> tuple[Tensor, Tensor | None]:
    """Log-probs of `targets` (N,) each read from the state at flat index `sources` (N,) of the (B·T) positions.

    For layouts where the state that predicts a token is not the one just before it in the row: in a prefix-shared
    row [prompt, response_1, response_2] the first token of response_2 is predicted from the last prompt position,
    so the plain causal shift of `causal_lm_logps` would read the wrong state (`bridle.data.shared_prefix`). Only
    the N gathered states reach the LM head, in chunks, as in `causal_lm_logps`. Returns ((N,) fp32 log-probs, the
    (N, H) states when `return_hidden`).
    """
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
              "use_cache": False}
    if _uses_plain_head(model) and hasattr(model, "get_decoder"):
        hidden = model.get_decoder()(**kwargs).last_hidden_state
        selected = hidden.reshape(-1, hidden.shape[-1])[sources]
        logps = head_token_logps(selected, model.get_output_embeddings(), targets, chunk_size=chunk_size,
                                 temperature=temperature)
        return logps, selected if return_hidden else None
    out = model(**kwargs, output_hidden_states=return_hidden)
    logits = out.logits.reshape(-1, out.logits.shape[-1])[sources]
    logps = logits_token_logps(logits / temperature, targets)
    if not return_hidden:
        return logps, None
    last = out.hidden_states[-1]
    return logps, last.reshape(-1, last.shape[-1])[sources]


def to_response(selected: Tensor, response_mask: Tensor) -> Tensor:
    """Values at the selected (response) positions, row-major, → (B, R) response-aligned, 0 on padding."""
    out = selected.new_zeros(response_mask.shape)
    out[response_mask] = selected
    return out
