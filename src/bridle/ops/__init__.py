"""Tensor math shared by objectives: per-token log-probs and masked reductions. Stateless."""

from bridle.ops.logprobs import SelectedLogps, causal_lm_logps, head_token_logps, logits_token_logps
from bridle.ops.masked import masked_mean, masked_sum

__all__ = ["SelectedLogps", "causal_lm_logps", "head_token_logps", "logits_token_logps", "masked_mean",
           "masked_sum"]
