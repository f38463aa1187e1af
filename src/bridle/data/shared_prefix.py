"""Prefix-shared batches: the sequences of one group (a preference pair, an RRHF group, the samples of one GRPO
prompt) start with the same tokens, so the batch holds those tokens once.

Layout. A group of sequences s_1 … s_k whose ids share a common prefix p (their longest common prefix: the prompt,
since prompt and answer are tokenized separately, see `bridle.data.chat`) becomes one stretch of a row:

    p, s_1[|p|:], s_2[|p|:], …, s_k[|p|:]

Every position carries three labels: `block` (which group, so several groups can sit back to back in one row, the
padding-free layout), `owner` (0 = the shared prefix, j = the suffix of the group's j-th sequence, -1 = padding)
and `position_ids` (its position in the plain, unshared sequence: each suffix continues from |p|). Query q may
attend to key k iff they are in the same block, k's position is not after q's, and k is in the prefix or in q's
own suffix (`bridle.ops.shared_prefix.shared_prefix_mask`). So each suffix sees exactly what it sees in its plain
sequence, with the same positions, and every hidden state equals the plain one: the shared layout is exact.

What breaks is the label shift. In a plain row, token t is predicted from position t-1; in a shared row the first
token of s_2's suffix is predicted from the LAST PREFIX position, not from the position before it in the row (the
last token of s_1's suffix). So nothing is shifted: `where[s, t]` is the flat index (row · T + column) in the batch
of position t of plain sequence s, and the log-prob of its trained token t is read at `sources = where[s, t-1]`.
A sequence's reward is read at `where[s, score position]`. Sequences are numbered group by group (group 0's
sequences first, in the order given).

A group whose common prefix would save less than `MIN_SAVED_SHARE` of its tokens (prompts truncated differently, so
they share nothing) is split into plain sequences, one stretch (row, or block of the padding-free row) each: a long
stretch would widen every padded row for nothing. Any layout is exact; this one only saves time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from bridle.data.tokenize import IGNORE_INDEX, TokenizedExample

PAD_OWNER = -1
MIN_SAVED_SHARE = 0.1  # a group whose prefix saves less than this share of its tokens goes as plain sequences


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of the token id lists (0 for no sequences)."""
    if not sequences:
        return 0
    first, limit = sequences[0], min(len(s) for s in sequences)
    for n in range(limit):
        if any(s[n] != first[n] for s in sequences[1:]):
            return n
    return limit


def worth_sharing(group: Sequence[TokenizedExample]) -> bool:
    """Whether holding the group's common prefix once saves at least `MIN_SAVED_SHARE` of its tokens."""
    plain = sum(len(e.input_ids) for e in group)
    saved = (len(group) - 1) * common_prefix_length([e.input_ids for e in group])
    return len(group) > 1 and saved >= MIN_SAVED_SHARE * plain


def stretch_groups(groups: Sequence[Sequence[TokenizedExample]]) -> list[Sequence[TokenizedExample]]:
    """The groups as laid out: each as it is when `worth_sharing`, else one single-sequence group per sequence
    (same sequence order)."""
    return [part for group in groups for part in ([group] if worth_sharing(group) else [[e] for e in group])]


def _group_stretch(group: Sequence[TokenizedExample], block: int) -> tuple[list[int], list[int], list[int],
                                                                            list[int], list[list[int]]]:
    """ids, positions, owners, blocks of one group's stretch, and each sequence's plain position → stretch index."""
    p = common_prefix_length([e.input_ids for e in group])
    ids, positions, owners = list(group[0].input_ids[:p]), list(range(p)), [0] * p
    where = []
    for j, example in enumerate(group, start=1):
        start = len(ids)
        suffix = example.input_ids[p:]
        ids.extend(suffix)
        positions.extend(range(p, p + len(suffix)))
        owners.extend([j] * len(suffix))
        where.append(list(range(p)) + list(range(start, start + len(suffix))))
    return ids, positions, owners, [block] * len(ids), where


def shared_prefix_collate(groups: Sequence[Sequence[TokenizedExample]], *, pad_id: int, one_row: bool = False
                          ) -> dict[str, torch.Tensor]:
    """Groups of sequences → a prefix-shared batch: one right-padded row per group, or with `one_row` all groups
    back to back in a single row (padding-free; `block` keeps them apart).

    Returns (R rows, T columns, S sequences, N trained tokens, L = longest sequence):
      input_ids, position_ids, owner, block (R, T): the layout (see the module docstring); padding has owner -1.
      where (S, L): flat index of each plain position of each sequence, -1 past its end.
      lengths (S,): plain lengths. num_tokens: positions that are not padding.
      sources, targets, token_sequence, token_position (N,): for each trained token (label != -100 at plain
        position t ≥ 1) the flat index of the state that predicts it (where[s, t-1]), its id, its sequence s and
        its column t-1 in the shifted plain layout (B, T-1) of `causal_lm_logps`.
    """
    groups = stretch_groups(groups)
    stretches, wheres = [], []
    for block, group in enumerate(groups):
        *stretch, where = _group_stretch(group, block)
        stretches.append(stretch)
        wheres.append(where)
    if one_row:
        offsets = list(itertools.accumulate((len(s[0]) for s in stretches[:-1]), initial=0))
        stretches = [[list(itertools.chain.from_iterable(s[k] for s in stretches)) for k in range(4)]]
        rows = [0] * len(groups)
    else:
        offsets, rows = [0] * len(groups), list(range(len(groups)))
    width = max(len(s[0]) for s in stretches)
    shape = (len(stretches), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    owner = torch.full(shape, PAD_OWNER, dtype=torch.long)
    block = torch.full(shape, -1, dtype=torch.long)
    for r, (ids, positions, owners, blocks) in enumerate(stretches):
        n = len(ids)
        input_ids[r, :n] = torch.tensor(ids, dtype=torch.long)
        position_ids[r, :n] = torch.tensor(positions, dtype=torch.long)
        owner[r, :n] = torch.tensor(owners, dtype=torch.long)
        block[r, :n] = torch.tensor(blocks, dtype=torch.long)
    examples = [e for group in groups for e in group]
    longest = max(len(e.input_ids) for e in examples)
    where = torch.full((len(examples), longest), -1, dtype=torch.long)
    sources, targets, token_sequence, token_position = [], [], [], []
    s = 0
    for g, group in enumerate(groups):
        base = rows[g] * width + offsets[g]
        for example, plain in zip(group, wheres[g]):
            flat = [base + i for i in plain]
            where[s, :len(flat)] = torch.tensor(flat, dtype=torch.long)
            for t in range(1, len(example.input_ids)):
                if example.labels[t] != IGNORE_INDEX:
                    sources.append(flat[t - 1])
                    targets.append(example.labels[t])
                    token_sequence.append(s)
                    token_position.append(t - 1)
            s += 1
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return {"input_ids": input_ids, "position_ids": position_ids, "owner": owner, "block": block, "where": where,
            "lengths": as_long([len(e.input_ids) for e in examples]), "sources": as_long(sources),
            "targets": as_long(targets), "token_sequence": as_long(token_sequence),
            "token_position": as_long(token_position), "num_sequences": torch.tensor(len(examples)),
            "num_tokens": (owner != PAD_OWNER).sum()}


def stretches_lengths(groups: Sequence[Sequence[TokenizedExample]]) -> list[int]:
    """Positions each group takes in the shared layout: its common prefix once plus every sequence's suffix when
    `worth_sharing`, else all of its sequences."""
    lengths = []
    for group in groups:
        p = common_prefix_length([e.input_ids for e in group]) if worth_sharing(group) else 0
        lengths.append(p + sum(len(e.input_ids) - p for e in group))
    return lengths


def prompt_token_share(groups: Sequence[Sequence[TokenizedExample]]) -> tuple[float, float]:
    """(share of all plain tokens that are shared-prefix tokens, share of the plain tokens the shared layout
    keeps): what prefix sharing can save on this data, e.g. for benchmark notes."""
    plain = sum(len(e.input_ids) for group in groups for e in group)
    if not plain:
        return 0.0, 1.0
    prefix = sum(common_prefix_length([e.input_ids for e in group]) * len(group) for group in groups if len(group) > 1)
    return prefix / plain, sum(stretches_lengths(groups)) / plain
