"""Padding and packing: lengths drive masks, packed examples stay whole and never predict across a boundary."""

from __future__ import annotations

import torch

from bridle.data import PackedRow, TokenizedExample, pack_examples, packed_collate, pad_collate

PAD = 1  # the pad id equals an id inside the examples (EOS), as with SmolLM2


def _ex(ids: list[int], prompt_len: int = 0) -> TokenizedExample:
    return TokenizedExample(list(ids), [-100] * prompt_len + list(ids[prompt_len:]), False)


def test_pad_collate_masks_from_lengths_and_keeps_eos_equal_to_pad() -> None:
    batch = pad_collate([_ex([5, 6, PAD], prompt_len=1), _ex([7, 8, 9, 10, PAD], prompt_len=2)], pad_id=PAD)
    assert batch["input_ids"].tolist() == [[5, 6, PAD, PAD, PAD], [7, 8, 9, 10, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 6, PAD, -100, -100], [-100, -100, 9, 10, PAD]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_pad_collate_num_loss_tokens_counts_shifted_targets_only() -> None:
    # all-tokens example: label at position 0 is never a target after the shift, so 3 of 4 count; second: 2
    batch = pad_collate([_ex([5, 6, 7, PAD]), _ex([8, 9, PAD], prompt_len=1)], pad_id=PAD)
    assert batch["num_loss_tokens"].ndim == 0 and batch["num_loss_tokens"].item() == 3 + 2


def test_pack_examples_is_first_fit_decreasing_and_never_splits_an_example() -> None:
    examples = [_ex([10] * 3), _ex([11] * 6), _ex([12] * 4), _ex([13] * 2), _ex([14] * 5)]
    rows = pack_examples(examples, max_length=8)
    # longest first: 6 → row0, 5 → row1, 4 → row2, 3 → row1 (5+3), 2 → row0 (6+2)
    assert [r.input_ids for r in rows] == [[11] * 6 + [13] * 2, [14] * 5 + [10] * 3, [12] * 4]
    assert all(len(r.input_ids) <= 8 for r in rows)
    assert sorted(sum((r.input_ids for r in rows), [])) == sorted(sum((e.input_ids for e in examples), []))
    assert pack_examples(examples, max_length=8) == rows  # deterministic


def test_packed_position_ids_restart_at_zero_for_each_example() -> None:
    rows = pack_examples([_ex([5, 6, 7]), _ex([8, 9])], max_length=8)
    assert rows == [PackedRow([5, 6, 7, 8, 9], [-100, 6, 7, -100, 9], [0, 1, 2, 0, 1])]


def test_first_token_of_each_packed_example_is_never_a_target() -> None:
    rows = pack_examples([_ex([5, 6, 7]), _ex([8, 9]), _ex([3, 4])], max_length=16)
    starts = [i for i, p in enumerate(rows[0].position_ids) if p == 0]
    assert len(starts) == 3 and all(rows[0].labels[i] == -100 for i in starts)


def test_packed_collate_pads_as_own_segment_without_attention_mask() -> None:
    rows = pack_examples([_ex([5, 6, 7, 8]), _ex([9, 10]), _ex([11, 12])], max_length=4)
    batch = packed_collate(rows, pad_id=PAD)
    assert "attention_mask" not in batch
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 11, 12]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3], [0, 1, 0, 1]]
    short = packed_collate([PackedRow([5, 6], [-100, 6], [0, 1]), rows[0]], pad_id=PAD)
    assert short["input_ids"][0].tolist() == [5, 6, PAD, PAD]
    assert short["position_ids"][0].tolist() == [0, 1, 0, 1]
    assert short["labels"][0].tolist() == [-100, 6, -100, -100]


def test_packed_num_loss_tokens_equals_sum_over_unpacked_examples() -> None:
    examples = [_ex([5, 6, 7, PAD], prompt_len=2), _ex([8, 9, PAD]), _ex([3, 4, 5, 6, PAD], prompt_len=1)]
    unpacked = pad_collate(examples, pad_id=PAD)["num_loss_tokens"].item()
    packed = packed_collate(pack_examples(examples, max_length=16), pad_id=PAD)["num_loss_tokens"].item()
    assert packed == unpacked == 2 + 2 + 4
