"""One decoding step's math, as tensor ops over the whole batch: temperature, top-k / top-p truncation, the token
drawn, and what online RL records about it (log π(token) and the entropy of π, π = softmax(logits / temperature),
taken BEFORE truncation, as PPO's ratio needs).

The draw is the one HF `generate` makes (softmax of the truncated scores, then `torch.multinomial(probs, 1)` on the
global RNG, written out as multinomial computes it; argmax when greedy), so with the same logits the same seed gives
the same tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class Choice(NamedTuple):
    """tokens (B,), their log-probs under π (B,), and the entropy of π (B,)."""

    tokens: Tensor
    logps: Tensor
    entropy: Tensor


def truncate_logits(scores: Tensor, top_k: int, top_p: float) -> Tensor:
    """Keep the top_k largest logits and the smallest set whose probability reaches top_p; the rest become -inf."""
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_scores.softmax(-1) >= top_p  # keep the token that crosses top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores


def sampling_logprobs(logits: Tensor, temperature: float) -> Tensor:
    """log softmax(logits / temperature) in fp32, (B, V); temperature 0 (greedy) counts as 1."""
    return F.log_softmax(logits.float() / (temperature if temperature > 0 else 1.0), dim=-1)


def entropy_of(logp: Tensor) -> Tensor:
    """Entropy of each row's distribution from its log-probs (B, V) -> (B,); -inf log-probs count 0."""
    return -(logp.exp() * logp).nan_to_num().sum(-1)


def exponential_noise(rows: int, vocab: int, device: torch.device) -> Tensor:
    """What `torch.multinomial(probs, 1)` draws from the global RNG for a (rows, vocab) batch: one Exp(1) per entry.
    The token is then argmax(probs / noise) (the exponential-race form of sampling that multinomial itself runs for a
    single sample), so drawing the noise for the whole batch keeps a row's draw the same when others have left."""
    return torch.empty(rows, vocab, device=device).exponential_(1)


def choose(logits: Tensor, *, temperature: float, top_k: int = 0, top_p: float = 1.0,
           noise: Tensor | None = None) -> Choice:
    """The next token of every row of `logits` (B, V): greedy at temperature 0, else drawn from the truncated
    softmax(logits / temperature) with `noise` (B, V) from `exponential_noise`. Log-prob and entropy come from the
    untruncated distribution: log π(t) = x_t − logsumexp(x) and H(π) = logsumexp(x) − Σ π·x, x = logits / T
    (no (B, V) log-prob tensor is made)."""
    scaled = logits.float() / (temperature if temperature > 0 else 1.0)
    lse = torch.logsumexp(scaled, dim=-1)
    probs = F.softmax(scaled, dim=-1)
    if temperature > 0:
        if noise is None:
            raise ValueError("sampling at temperature > 0 needs the noise of exponential_noise")
        truncated = truncate_logits(scaled, top_k, top_p)
        kept = probs if truncated is scaled else F.softmax(truncated, dim=-1)
        tokens = (kept / noise).argmax(-1)
    else:
        tokens = scaled.argmax(-1)
    expected = torch.bmm(probs.unsqueeze(1), scaled.unsqueeze(2)).view(-1)  # Σ π·x per row
    entropy = lse - expected
    if bool(entropy.isnan().any()):  # -inf logits: 0 · -inf; the slow form counts them 0
        entropy = entropy_of(scaled - lse.unsqueeze(-1))
    return Choice(tokens, scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse, entropy)
