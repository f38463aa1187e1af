"""A key/value cache that grows into room reserved up front: HF's `DynamicCache` concatenates every layer's keys and
values at every step (a copy of the whole cache per token), this one writes the new token's keys and values in place
and hands attention a view of the filled part. Same tensors, same attention, no copy; rows leave by index."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class ReservedLayer(DynamicLayer):
    """A full-attention layer with room for `capacity` positions, allocated at its first update."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity, self.length = capacity, 0
        self._keys: Tensor | None = None
        self._values: Tensor | None = None

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        if self._keys is None or self._values is None:
            self.lazy_initialization(key_states, value_states)
            batch, heads, _, _ = key_states.shape
            self._keys = key_states.new_empty(batch, heads, self.capacity, key_states.shape[-1])
            self._values = value_states.new_empty(batch, heads, self.capacity, value_states.shape[-1])
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; {end} were asked for")
        self._keys[:, :, self.length:end] = key_states
        self._values[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: Tensor) -> None:
        if self._keys is not None and self._values is not None:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self.keys, self.values = self._keys[:, :, :self.length], self._values[:, :, :self.length]

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._keys is not None:
            self.batch_select_indices(torch.arange(self._keys.shape[0], device=self._keys.device)
                                      .repeat_interleave(repeats))


def reserved_cache(config: Any, capacity: int) -> DynamicCache:
    """A `DynamicCache` for `config` whose plain full-attention layers reserve `capacity` positions (sliding-window
    layers stay as HF makes them)."""
    cache = DynamicCache(config=config)
    cache.layers = [ReservedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
