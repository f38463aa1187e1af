"""One decoding step's math: the inverse-CDF draw follows the probabilities, and log-prob / entropy are those of the
untruncated distribution at the sampling temperature."""

from __future__ import annotations

import math

import torch

from bridle.rollout.choice import BLOCK, choose, draw_tokens


def test_draw_tokens_follows_the_probabilities_and_never_draws_a_zero():
    generator = torch.Generator().manual_seed(0)
    vocab = 2 * BLOCK + 188  # the last block is partly padding
    probs = torch.rand(vocab, generator=generator) ** 4
    probs[::7] = 0.0  # zeros inside blocks
    probs[600:] = 0.0  # and a tail of zeros, a whole block of them
    probs /= probs.sum()
    n = 200_000
    tokens = draw_tokens(probs.expand(n, vocab), torch.rand(n, dtype=torch.float64, generator=generator))
    freq = torch.bincount(tokens, minlength=vocab).double() / n
    assert freq.shape == (vocab,) and float(freq[probs == 0].sum()) == 0.0
    sigma = (probs.double() * (1 - probs.double()) / n).sqrt()
    assert bool(((freq - probs.double()).abs() <= 5 * sigma + 5 / n).all())  # 5 / n: rare tokens are Poisson
    # the edges of [0, 1): the first kept token and the last kept token
    edges = draw_tokens(probs.expand(2, vocab), torch.tensor([0.0, 1.0 - 2**-53]))
    kept = probs.nonzero().squeeze(1)
    assert edges.tolist() == [int(kept[0]), int(kept[-1])]


def test_one_hot_rows_draw_their_token_whatever_the_uniform():
    probs = torch.zeros(3, 3 * BLOCK)
    probs[0, 5], probs[1, 3 * BLOCK - 1], probs[2, BLOCK] = 1.0, 1.0, 1.0
    for u in (0.0, 0.5, 1.0 - 2**-53):
        assert draw_tokens(probs, torch.full((3,), u, dtype=torch.float64)).tolist() == [5, 3 * BLOCK - 1, BLOCK]


def test_logp_and_entropy_are_of_the_untruncated_distribution_at_the_temperature():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, float("-inf"), 1.0]])
    temperature = 0.5
    pick = choose(logits, temperature=temperature, top_k=1, uniform=torch.tensor([0.3, 0.9], dtype=torch.float64))
    assert pick.tokens.tolist() == [0, 1]  # top_k=1 leaves only the largest
    full = torch.log_softmax(logits / temperature, -1)
    # after truncation to one token its log-prob would be 0; before it, it is log π(token) < 0
    torch.testing.assert_close(pick.logps, full.gather(-1, pick.tokens[:, None]).squeeze(-1))
    assert bool((pick.logps < -0.01).all())
    entropy = -(full.exp() * full).nan_to_num().sum(-1)  # the -inf logit counts 0
    torch.testing.assert_close(pick.entropy, entropy)
    assert bool(torch.isfinite(pick.entropy).all()) and 0 < float(pick.entropy[0]) < math.log(4)
    greedy = choose(logits, temperature=0.0)
    assert greedy.tokens.tolist() == [0, 1]
    torch.testing.assert_close(greedy.logps, torch.log_softmax(logits, -1).gather(-1, greedy.tokens[:, None])[:, 0])
