"""The model side of prefix-shared batches (layout: `bridle.data.shared_prefix`): the attention mask, log-probs read
where each token is predicted from, and a check that a model computes the shared layout exactly.

The mask is a 4D additive float mask (R, 1, T, T) in the model's dtype: 0 where a query may attend a key, the
dtype's minimum elsewhere. transformers (5.x, `masking_utils._preprocess_mask_arguments`) passes a 4D mask through
untouched to the attention function; the eager kernel adds it to the scores (a bool mask would be added as 0/1, so
it must be additive), and the sdpa kernel takes an additive float mask as well. Flash-attention kernels take no
mask and flex attention wants its own BlockMask, so those fall back to the plain layout (`shared_prefix_problem`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bridle.ops.logprobs import DEFAULT_CHUNK, gathered_token_logps

MASK_KERNELS = ("sdpa", "eager")


def shared_prefix_mask(position_ids: Tensor, owner: Tensor, block: Tensor, dtype: torch.dtype) -> Tensor:
    """(R, T) layout labels → (R, 1, T, T) additive mask. Query q sees key k iff same block, k's position is not
    after q's, and k is in the shared prefix (owner 0) or in q's own suffix. Padding (owner -1, block -1) sees only
    padding, so no row of the mask is empty (no NaN from a softmax over nothing)."""
    same_block = block[:, :, None] == block[:, None, :]
    not_after = position_ids[:, None, :] <= position_ids[:, :, None]
    owner_q, owner_k = owner[:, :, None], owner[:, None, :]
    visible = same_block & not_after & ((owner_k == 0) | (owner_k == owner_q))
    mask = torch.zeros(visible.shape, dtype=dtype, device=position_ids.device)
    return mask.masked_fill_(~visible, torch.finfo(dtype).min).unsqueeze(1)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's floating-point weights (the mask's dtype)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def shared_prefix_hidden(body: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Decoder states of a prefix-shared batch, flattened to (R·T, H) so `where` / `sources` index them."""
    mask = shared_prefix_mask(batch["position_ids"], batch["owner"], batch["block"], model_dtype(body))
    hidden = body(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"],
                  use_cache=False).last_hidden_state
    return hidden.reshape(-1, hidden.shape[-1])


def shared_prefix_token_logps(model: nn.Module, batch: dict[str, Tensor], *, chunk_size: int = DEFAULT_CHUNK,
                              temperature: float = 1.0, return_hidden: bool = False) -> tuple[Tensor, Tensor | None]:
    """(N,) log-probs of the batch's trained tokens (`targets`, read at `sources`), in `token_sequence` order, and
    with `return_hidden` the (N, H) decoder states they were read from (value heads)."""
    mask = shared_prefix_mask(batch["position_ids"], batch["owner"], batch["block"], model_dtype(model))
    return gathered_token_logps(model, batch["input_ids"], batch["sources"], batch["targets"], attention_mask=mask,
                                position_ids=batch["position_ids"], chunk_size=chunk_size, temperature=temperature,
                                return_hidden=return_hidden)


def sequence_sums(values: Tensor, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Per-sequence sums (S,) of per-token `values` (N,) and trained-token counts (S,), sequences in group order."""
    count = int(batch["num_sequences"])
    index = batch["token_sequence"]
    return values.new_zeros(count).index_add(0, index, values), torch.bincount(index, minlength=count)


def shared_prefix_problem(body: nn.Module, *, max_length: int) -> str | None:
    """Why `body` (a decoder returning `last_hidden_state`) cannot run prefix-shared batches exactly, or None.

    Checks the attention kernel and sliding windows shorter than `max_length` (a window over plain positions that a
    single 4D mask cannot express for every layer), then runs a small group both ways and compares hidden states,
    which catches any architecture whose forward rejects or ignores a 4D mask or custom position ids."""
    config = getattr(body, "config", None)
    text = config.get_text_config() if config is not None and hasattr(config, "get_text_config") else config
    kernel = getattr(config, "_attn_implementation", None)
    if kernel not in MASK_KERNELS:
        return f"attention implementation {kernel!r} takes no custom 4D mask (sdpa and eager do)"
    window = getattr(text, "sliding_window", None)
    if window and getattr(text, "use_sliding_window", True) and window < max_length:
        return f"sliding-window attention ({window} tokens < max_length {max_length})"
    vocab = int(getattr(text, "vocab_size", 0) or 0)
    if vocab < 16:
        return "model config has no usable vocab_size"
    prefix, first, second = [5, 9, 3, 11], [7, 2, 13], [4, 8]
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            device = next(body.parameters()).device
            plain = [body(input_ids=torch.tensor([prefix + s], device=device), use_cache=False).last_hidden_state[0]
                     for s in (first, second)]
            row = torch.tensor([prefix + first + second], device=device)
            positions = torch.tensor([list(range(7)) + [4, 5]], device=device)
            owner = torch.tensor([[0] * 4 + [1] * 3 + [2] * 2], device=device)
            hidden = shared_prefix_hidden(body, {"input_ids": row, "position_ids": positions, "owner": owner,
                                                 "block": torch.zeros_like(owner)})
    except Exception as exc:  # an architecture whose forward rejects the mask or the positions
        return f"its forward rejects a 4D mask ({type(exc).__name__}: {str(exc)[:80]})"
    finally:
        body.train(was_training)
    got = [hidden[:7], torch.cat([hidden[:4], hidden[7:]])]
    scale = max(float(p.abs().max()) for p in plain) + 1e-6
    tolerance = 1e-4 if model_dtype(body) == torch.float32 else 3e-2
    if any(float((g.float() - p.float()).abs().max()) > tolerance * scale for g, p in zip(got, plain)):
        return "its hidden states under a 4D mask differ from the plain layout's"
    return None
