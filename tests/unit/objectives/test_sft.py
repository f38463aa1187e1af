import math

import torch

from bridle.objectives import sft


def test_sft_is_mean_negative_log_likelihood_over_masked_tokens():
    # log-probs of log(0.5), log(0.25), and a masked token that must not count:
    # L = -(log 0.5 + log 0.25) / 2 = (0.6931 + 1.3863) / 2 = 1.0397
    token_logps = torch.tensor([[math.log(0.5), math.log(0.25), -100.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, metrics = sft(token_logps, mask)
    assert abs(loss.item() - 1.0397208) < 1e-6
    assert torch.equal(metrics["nll"], loss.detach())


def test_sft_without_mask_averages_every_given_token():
    loss, _ = sft(torch.tensor([-1.0, -3.0]))
    assert loss.item() == 2.0
