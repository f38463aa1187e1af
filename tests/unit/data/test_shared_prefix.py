"""The prefix-shared layout on hand-built groups: rows, positions, owners, and where each trained token is read."""

from __future__ import annotations

from bridle.data.shared_prefix import common_prefix_length, prompt_token_share, shared_prefix_collate
from bridle.data.tokenize import TokenizedExample

X = -100


def example(prompt: list[int], completion: list[int]) -> TokenizedExample:
    return TokenizedExample(prompt + completion, [X] * len(prompt) + completion)


PAIR = [example([1, 40, 41], [50, 51, 2]), example([1, 40, 41], [60, 2])]
APART = [example([7, 8], [30, 2]), example([1, 7, 8], [32, 2])]  # prompts truncated differently: nothing shared


def test_common_prefix_length() -> None:
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[1, 2], [1, 2]]) == 2
    assert common_prefix_length([[5], [1]]) == 0
    assert common_prefix_length([]) == 0


def test_pair_layout_positions_owners_and_sources() -> None:
    batch = shared_prefix_collate([PAIR], pad_id=2)
    # row: prompt [1, 40, 41] at 0..2, chosen suffix [50, 51, 2] at 3..5, rejected suffix [60, 2] at 6..7
    assert batch["input_ids"].tolist() == [[1, 40, 41, 50, 51, 2, 60, 2]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 3, 4]]
    assert batch["owner"].tolist() == [[0, 0, 0, 1, 1, 1, 2, 2]]
    assert batch["where"].tolist() == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 6, 7, -1]]
    # chosen 50 from 41 (index 2), 51 from 50 (3), 2 from 51 (4); rejected 60 from the LAST PROMPT position (2),
    # not from index 5 just before it in the row; 2 from 60 (6)
    assert batch["sources"].tolist() == [2, 3, 4, 2, 6]
    assert batch["targets"].tolist() == [50, 51, 2, 60, 2]
    assert batch["token_sequence"].tolist() == [0, 0, 0, 1, 1]
    assert batch["token_position"].tolist() == [2, 3, 4, 2, 3]
    assert int(batch["num_tokens"]) == 8


def test_padded_rows_and_one_row_layouts() -> None:
    padded = shared_prefix_collate([PAIR, APART], pad_id=2)
    # APART shares nothing, so its sequences go as two plain rows (4 and 5 tokens), beside PAIR's shared row of 8
    assert padded["input_ids"].shape == (3, 8)
    assert padded["owner"].tolist() == [[0, 0, 0, 1, 1, 1, 2, 2], [0, 0, 0, 0, -1, -1, -1, -1], [0] * 5 + [-1] * 3]
    assert padded["position_ids"][2].tolist()[:5] == [0, 1, 2, 3, 4]
    assert padded["where"][3].tolist() == [16, 17, 18, 19, 20, -1]  # row 2 starts at flat index 16
    one_row = shared_prefix_collate([PAIR, APART], pad_id=2, one_row=True)
    assert one_row["input_ids"].shape == (1, 17)
    assert one_row["block"].tolist() == [[0] * 8 + [1] * 4 + [2] * 5]
    assert one_row["where"][2].tolist()[:4] == [8, 9, 10, 11]  # APART's first sequence starts after PAIR's 8


def test_a_group_whose_prefix_saves_little_goes_as_plain_rows() -> None:
    long = list(range(100, 150))
    barely = [example([1], long + [2]), example([1], long[::-1] + [2])]  # 1 shared token of 104
    assert shared_prefix_collate([barely], pad_id=2)["input_ids"].shape == (2, 52)
    assert shared_prefix_collate([PAIR], pad_id=2)["input_ids"].shape == (1, 8)  # saves 3 of 11


def test_prompt_token_share() -> None:
    share, kept = prompt_token_share([PAIR])
    assert share == 6 / 11  # 3 prompt tokens in each of the 6- and 5-token sequences
    assert kept == 8 / 11
