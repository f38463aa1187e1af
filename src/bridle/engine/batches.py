"""Deterministic batch order: what the engine trains on at any step follows from (seed, step) alone, so a resumed
run sees exactly the batches an uninterrupted one would, without replaying the data."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class BatchPlan:
    """Micro-batch m of the run is batch (m mod per_epoch) of epoch (m div per_epoch); each epoch reshuffles with a
    generator seeded by (seed, epoch). The last partial batch of an epoch is kept (smaller), never dropped."""

    def __init__(self, num_items: int, batch_size: int, *, seed: int, shuffle: bool = True,
                 process_index: int = 0, num_processes: int = 1) -> None:
        if num_items == 0:
            raise ValueError("no training examples")
        self.num_items, self.batch_size, self.seed, self.shuffle = num_items, batch_size, seed, shuffle
        self.process_index, self.num_processes = process_index, num_processes
        self.per_epoch = math.ceil(num_items / (batch_size * num_processes))
        self._epoch, self._order = -1, torch.arange(0)

    def _order_for(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            if self.shuffle:
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._order = torch.randperm(self.num_items, generator=gen)
            else:
                self._order = torch.arange(self.num_items)
            self._epoch = epoch
        return self._order

    def indices(self, micro_index: int) -> list[int]:
        """Item indices of the run's micro-batch number `micro_index` for this process."""
        epoch, within = divmod(micro_index, self.per_epoch)
        order = self._order_for(epoch)
        global_size = self.batch_size * self.num_processes
        chunk = order[within * global_size:(within + 1) * global_size]
        mine = chunk[self.process_index::self.num_processes]
        return mine.tolist()


def iterate_eval(num_items: int, batch_size: int) -> Sequence[list[int]]:
    return [list(range(i, min(i + batch_size, num_items))) for i in range(0, num_items, batch_size)]
