"""One decoding step's math, as tensor ops over the whole batch: temperature, top-k / top-p truncation, the token
drawn, and what online RL records about it (log π(token) and the entropy of π, π = softmax(logits / temperature),
taken BEFORE truncation, as PPO's ratio needs).

The draw is exact inverse-CDF sampling from the truncated softmax with ONE uniform number per row (`draw_tokens`);
HF `generate` calls `torch.multinomial`, which draws one exponential per vocabulary entry (on this CPU that draw
alone cost more than all the rest of the step's sampling math). Same distribution, other random numbers: a seed gives
other samples than the HF sampler does with that seed. Greedy (temperature 0) is argmax, as in HF.
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


BLOCK = 256  # vocabulary entries per block of the two-level inverse CDF


def draw_tokens(probs: Tensor, uniform: Tensor) -> Tensor:
    """Inverse-CDF sampling: row b takes the token whose CDF interval holds uniform[b] · Σ probs[b] (probs (B, V) ≥ 0,
    uniform (B,) in [0, 1), float64). Two levels so that no (B, V) float64 tensor is made: CDF over blocks of BLOCK
    tokens (fp32 block sums, float64 running sum), then over the one block hit. Tokens of probability 0 are never
    drawn. One uniform per row, where `torch.multinomial` draws one exponential per vocabulary entry."""
    rows, vocab = probs.shape
    blocks = -(-vocab // BLOCK)
    padded = F.pad(probs, (0, blocks * BLOCK - vocab)).view(rows, blocks, BLOCK)
    mass = padded.sum(-1, dtype=torch.float64)  # (B, blocks)
    cdf = mass.cumsum(-1)
    target = uniform.to(torch.float64) * cdf[:, -1]
    last_full = (torch.arange(blocks, device=probs.device) * (mass > 0)).amax(-1)  # the last block with mass
    block = torch.searchsorted(cdf, target.unsqueeze(-1), right=True).squeeze(-1).minimum(last_full)
    before = torch.where(block > 0, cdf.gather(-1, (block - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1), 0.0)
    inside = padded.gather(1, block.view(rows, 1, 1).expand(rows, 1, BLOCK)).squeeze(1)  # (B, BLOCK)
    inner = inside.to(torch.float64).cumsum(-1) + before.unsqueeze(-1)
    last_kept = (torch.arange(BLOCK, device=probs.device) * (inside > 0)).amax(-1)
    offset = torch.searchsorted(inner, target.unsqueeze(-1), right=True).squeeze(-1).minimum(last_kept)
    return block * BLOCK + offset


def choose(logits: Tensor, *, temperature: float, top_k: int = 0, top_p: float = 1.0,
           uniform: Tensor | None = None) -> Choice:
    """The next token of every row of `logits` (B, V): greedy at temperature 0, else drawn from the truncated
    softmax(logits / temperature) with one uniform (B,) per row (`draw_tokens`). Log-prob and entropy come from the
    untruncated distribution: log π(t) = x_t − logsumexp(x) and H(π) = logsumexp(x) − Σ π·x, x = logits / T
    (no (B, V) log-prob tensor is made)."""
    scaled = logits.float()
    if temperature > 0 and temperature != 1.0:
        scaled = scaled / temperature
    lse = torch.logsumexp(scaled, dim=-1)
    probs = F.softmax(scaled, dim=-1)
    if temperature > 0:
        if uniform is None:
            raise ValueError("sampling at temperature > 0 needs one uniform number per row")
        truncated = truncate_logits(scaled, top_k, top_p)
        tokens = draw_tokens(probs if truncated is scaled else F.softmax(truncated, dim=-1), uniform)
    else:
        tokens = scaled.argmax(-1)
    entropy = lse - torch.linalg.vecdot(probs, scaled)
    if bool(entropy.isnan().any()):  # -inf logits: 0 · -inf; the slow form counts them 0
        entropy = entropy_of(scaled - lse.unsqueeze(-1))
    return Choice(tokens, scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse, entropy)
