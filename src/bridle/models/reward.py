"""Reward models: a causal LM body with a scalar `score` head, saved as a HF sequence-classification model.

One scoring rule, the one transformers' `*ForSequenceClassification.forward` uses (and so TRL's `RewardTrainer`,
which calls that forward): the score of a sequence is the head applied to the hidden state at its **last token
whose id is not `config.pad_token_id`** (`score_positions`). Training, `bridle score` / `eval-rm` / `best-of-n`, PPO
rewards and any HF or TRL user of a saved dir therefore read the same position and get the same score.

This is the one place where ids are compared with the pad id on purpose. Masks (attention, loss) still come from
lengths, never from pad ids: SmolLM2's pad token IS its EOS (`<|im_end|>`), so a pad-id mask would hide real EOS
tokens. For the score position, matching transformers is the point: where pad == EOS, a sequence ending in EOS is
scored at the token before that EOS, exactly as `AutoModelForSequenceClassification` scores it. We only add that
positions outside `attention_mask` never count, which changes nothing for batches padded with the pad id.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from bridle.errors import ConfigError, ModelError
from bridle.models.atomic import atomic_directory
from bridle.models.loading import DTYPES, attn_kwargs, enable_checkpointing, load_error, resolve_model
from bridle.models.lora import LoraSettings, apply_lora, unwrap, write_model_files
from bridle.ops.shared_prefix import shared_prefix_hidden

SCORE_HEAD = "score"
ADAPTER_CONFIG = "adapter_config.json"
STATS_FILE = "reward_stats.json"  # beside a `bridle rm` model: mean and std of its training rewards
BASE_DIR = "base"  # in a LoRA reward-model dir: the base as a 1-label classifier (config.json + links to weights)
WEIGHT_PREFIXES = ("model", "pytorch_model")  # model.safetensors, model-00001-of-00002.safetensors, pytorch_model.bin
WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json")


def load_reward_model(name_or_path: str, *, dtype: str = "float32", pad_token_id: int | None = None,
                      init_head: bool = True, gradient_checkpointing: bool = False,
                      attn_implementation: str = "auto") -> PreTrainedModel:
    """Load `name_or_path` as `AutoModelForSequenceClassification` with one label.

    A causal LM directory gets a new head; `init_head` draws it from N(0, 1/(hidden+1)) so initial rewards are
    O(1) instead of depending on the config's initializer_range. A saved reward model keeps its head (init_head=False).
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; use float32 or bfloat16.")
    path = resolve_model(name_or_path)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=DTYPES[dtype],
                                                                   **attn_kwargs(attn_implementation))
    except (ImportError, OSError, ValueError, KeyError, RuntimeError) as exc:
        error = load_error("a reward model", path, exc, attn_implementation)
        raise ModelError(f"{error}\nReward models need an architecture with a sequence-classification class "
                         "(Llama, Qwen2, Mistral, ...).") from exc
    if not isinstance(getattr(model, SCORE_HEAD, None), nn.Linear):
        raise ModelError(f"{path}: the sequence-classification model has no linear `{SCORE_HEAD}` head; "
                         "Bridle reward models need a decoder with a `score` head (Llama, Qwen2, Mistral, ...).")
    if init_head:
        init_score_head(model)
    if pad_token_id is not None:  # the score position's pad id, here and in HF's forward for anyone loading the dir
        model.config.get_text_config().pad_token_id = pad_token_id
    model.config.use_cache = False
    if gradient_checkpointing:
        enable_checkpointing(model)
    return model


def load_trained_reward_model(path: str | Path, *, dtype: str = "float32"
                              ) -> tuple[PreTrainedModel, dict[str, Any] | None, Path]:
    """A `bridle rm` output dir (full, merged, or a LoRA adapter dir) or any HF 1-label classifier dir: (the model,
    its reward_stats.json if it has one, the directory it was read from). A LoRA dir's adapter and trained head are
    merged into its base."""
    directory = Path(path).expanduser()
    if not (directory / ADAPTER_CONFIG).is_file():  # adapter dirs have no config.json of their own
        directory = Path(resolve_model(str(path)))
    stats_path = directory / STATS_FILE
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else None
    if (directory / ADAPTER_CONFIG).is_file():
        model = _load_adapter(directory, dtype)
    else:
        model = load_reward_model(str(directory), dtype=dtype, init_head=False)
    return model, stats, directory


def _load_adapter(directory: Path, dtype: str) -> Any:
    """A LoRA reward model: its base (the `base/` classifier dir `bridle rm` writes beside the adapter, or the
    base model itself for older dirs) with the adapter and the trained head merged in."""
    from peft import PeftModel

    base_path = json.loads((directory / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base_path:
        raise ModelError(f"{directory}/{ADAPTER_CONFIG} names no base model; save with --merge-lora instead.")
    base = load_reward_model(base_path, dtype=dtype, init_head=False)
    return PeftModel.from_pretrained(base, str(directory)).merge_and_unload()


def save_reward_model(model: nn.Module, tokenizer: PreTrainedTokenizerBase | None, out_dir: str | Path, *,
                      merge_lora: bool = False) -> Path:
    """Write a reward model that plain transformers / peft load with no extra arguments; returns `out_dir`.

    Full or merged: a `…ForSequenceClassification` dir (`num_labels=1`, `pad_token_id` set) for
    `AutoModelForSequenceClassification.from_pretrained(out_dir)`. A LoRA adapter (peft's files, the trained head
    in `modules_to_save`) also gets `base/`, the base model as a 1-label classifier: its config.json (`num_labels=1`,
    the pad id, the classifier architecture) and links to the base's weight files. adapter_config.json names
    `base/` by absolute path, so `peft.AutoPeftModelForSequenceClassification.from_pretrained(out_dir)` builds a
    1-label base (from the base's own config.json it would build 2 labels and fail to load the head) from any
    working directory. Atomic, like `save_model`.
    """
    out_dir = Path(out_dir).expanduser()
    with atomic_directory(out_dir, replace=True) as tmp:
        write_model_files(model, tokenizer, tmp, merge_lora=merge_lora)
        if (tmp / ADAPTER_CONFIG).is_file():
            _write_classifier_base(unwrap(model), tmp, final_dir=out_dir.resolve())
    return out_dir


def _write_classifier_base(model: PreTrainedModel, adapter_dir: Path, *, final_dir: Path) -> None:
    """`adapter_dir/base/` for the adapter's base (see `save_reward_model`), and adapter_config.json pointing at it.
    A base without weight files to link (not a local HF dir) keeps its name, made absolute if it is a local dir."""
    adapter_config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    source = Path(adapter_config.get("base_model_name_or_path") or model.name_or_path).expanduser()
    weights = sorted(f for f in source.iterdir() if f.name.startswith(WEIGHT_PREFIXES)
                     and f.name.endswith(WEIGHT_SUFFIXES)) if source.is_dir() else []
    if weights:
        base = adapter_dir / BASE_DIR
        base.mkdir()
        config = AutoConfig.from_pretrained(source)
        config.num_labels = 1
        config.architectures = [type(model).__name__]
        config.get_text_config().pad_token_id = model.config.get_text_config().pad_token_id
        config.save_pretrained(base)
        for weight in weights:
            _link(weight.absolute(), base / weight.name)
        adapter_config["base_model_name_or_path"] = str(final_dir / BASE_DIR)
    elif source.is_dir():
        adapter_config["base_model_name_or_path"] = str(source.absolute())
    (adapter_dir / ADAPTER_CONFIG).write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")


def _link(target: Path, link: Path) -> None:
    """A symlink to `target` (no copy of the base's weights); a copy where symlinks are not allowed."""
    try:
        os.symlink(target, link)
    except OSError:
        shutil.copy2(target, link)


def init_score_head(model: PreTrainedModel) -> None:
    head = getattr(model, SCORE_HEAD)
    with torch.no_grad():
        nn.init.normal_(head.weight, std=1.0 / math.sqrt(head.in_features + 1))
        if head.bias is not None:
            head.bias.zero_()


def apply_reward_lora(model: PreTrainedModel, settings: LoraSettings) -> Any:
    """LoRA on the body; the new `score` head always trains in full (`modules_to_save`)."""
    return apply_lora(model, settings, task_type="SEQ_CLS", modules_to_save=[SCORE_HEAD])


def score_positions(input_ids: Tensor, attention_mask: Tensor, pad_id: int | None) -> Tensor:
    """(B, T) ids and mask → (B,) index of the position each row's score is read at.

    The last attended position whose id is not `pad_id`: transformers' `last_non_pad_token` rule, restricted to
    attended positions (right, left or no padding alike). A row with no such token (only pad/EOS ids) reads its
    first attended position, which is where transformers reads it too (position 0) when the row is not
    left-padded; a row with nothing attended reads position 0. `pad_id=None` (the config has none, so transformers
    scores one unpadded row at its last token) → the last attended position.
    """
    attended = attention_mask.bool()
    real = attended if pad_id is None else attended & (input_ids != pad_id)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    last_real = (real.long() * (positions + 1)).argmax(-1)
    first_attended = attended.long().argmax(-1)  # argmax returns the first of equal maxima
    return torch.where(real.any(-1), last_real, first_attended)


def packed_score_ends(sequences: Sequence[Sequence[int]], pad_id: int | None) -> Tensor:
    """(S,) score position of each sequence when `sequences` are packed back to back in one row (for
    `packed_reward_scores`): its start plus `score_positions` of the sequence alone."""
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.zeros((len(sequences), int(lengths.max())), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, :len(sequence)] = 1  # from lengths
    starts = lengths.cumsum(0) - lengths
    return starts + score_positions(ids, mask, pad_id)


def score_pad_id(model: nn.Module) -> int | None:
    """The pad id the score position is found with: the model config's, which transformers' forward reads."""
    return unwrap(model).config.get_text_config().pad_token_id


def reward_scores(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Scalar reward per row: head(decoder hidden state at `score_positions`, with the model config's pad id).
    (B, T) → (B,) fp32; equals `AutoModelForSequenceClassification`'s logits for right-padded or unpadded rows.

    position_ids count only attended tokens, so a left-padded row gets the same positions, hence the same score,
    as the same row right-padded or alone (transformers' own forward does not do this for left padding).
    """
    base = unwrap(model)  # peft's LoRA layers live inside the base modules, so calling them directly keeps LoRA
    body = getattr(base, base.base_model_prefix)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                  use_cache=False).last_hidden_state
    at = score_positions(input_ids, attention_mask, score_pad_id(model))
    last = hidden[torch.arange(hidden.shape[0], device=hidden.device), at]
    return getattr(base, SCORE_HEAD)(last).squeeze(-1).float()


def packed_reward_scores(model: nn.Module, input_ids: Tensor, position_ids: Tensor, ends: Tensor) -> Tensor:
    """Scores of sequences packed back to back in one row: input_ids, position_ids (1, N) with positions restarting
    at 0 per sequence (no padding at all), `ends` (S,) each sequence's score position in the row, from
    `packed_score_ends` (the same rule as `reward_scores`). Returns (S,) fp32."""
    base = unwrap(model)
    body = getattr(base, base.base_model_prefix)
    hidden = body(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
    return getattr(base, SCORE_HEAD)(hidden[0, ends]).squeeze(-1).float()


def shared_reward_scores(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Scores of the sequences of a prefix-shared batch (`bridle.data.shared_prefix`): `ends` (S,) is each
    sequence's score position (the `score_positions` rule on the sequence alone) as a flat index into the batch, so
    each score reads the same hidden state as in the plain layout. Returns (S,) fp32, sequences in group order."""
    base = unwrap(model)
    hidden = shared_prefix_hidden(getattr(base, base.base_model_prefix), batch)
    return getattr(base, SCORE_HEAD)(hidden[batch["ends"]]).squeeze(-1).float()


@torch.no_grad()
def score_sequences(model: nn.Module, sequences: list[list[int]], *, pad_id: int, batch_size: int = 8,
                    on_batch: Any = None) -> list[float]:
    """Scores of token sequences, in input order. Batches are formed in length order so little is padding;
    `on_batch(n)` is called after each batch (progress bars)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores: list[float] = [0.0] * len(sequences)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(sequences[i]) for i in idx)
        input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            input_ids[row, :len(sequences[i])] = torch.tensor(sequences[i])
            attention_mask[row, :len(sequences[i])] = 1
        values = reward_scores(model, input_ids.to(device), attention_mask.to(device)).tolist()
        for i, value in zip(idx, values):
            scores[i] = value
        if on_batch is not None:
            on_batch(len(idx))
    model.train(was_training)
    return scores
