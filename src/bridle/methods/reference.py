"""Reference log-probs, computed once before training and cached on disk, so no reference model lives in memory
while the policy trains. `ReferenceMixin` writes them onto the training items, where `collate` reads them.

The reference of a run is the policy's starting point: the same weights for full fine-tuning, the base with the
adapter disabled under LoRA (no second copy), or a separate `--reference-model` that is loaded, used and freed.
Values are cached under `<cache>/reference/<key>.pt`, key = sha256 of (model fingerprint incl. a weight digest,
the token ids and labels of every sequence, max_length, precision), so a second run on the same data skips it.
An entry that cannot be used (truncated, garbage, wrong shape, non-finite) is reported by path, deleted and
recomputed; temporary files that killed runs left behind are removed once their process is gone.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import re
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bridle.data.shared_prefix import shared_prefix_collate, stretches_lengths
from bridle.data.tokenize import TokenizedExample
from bridle.data.unpaired import sequences_collate
from bridle.engine.logging import console
from bridle.methods.sharing import causal_lm_sharing_problem, fallback_notice
from bridle.models import cache_dir, load_causal_lm, model_fingerprint, unwrap
from bridle.models.lora import is_peft
from bridle.ops import causal_lm_logps
from bridle.ops.shared_prefix import sequence_sums, shared_prefix_token_logps


def weights_digest(model: nn.Module) -> str:
    """sha256 over the base weights (adapters excluded): name, shape, sum and the first values of each tensor.

    Cheap (one pass of sums) yet changes when a model directory is overwritten by a trained model."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in unwrap(model).state_dict().items():
            if "lora_" in name:
                continue
            flat = tensor.detach().reshape(-1)
            digest.update(name.replace(".base_layer", "").encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(f"{float(flat.double().sum()):.10e}".encode())
            digest.update(flat[:16].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def reference_key(fingerprint: str, sequences: Sequence[TokenizedExample], *, max_length: int, precision: str
                  ) -> str:
    """Cache key: the model, every sequence's token ids and loss labels, max_length and precision."""
    digest = hashlib.sha256(f"{fingerprint}|{max_length}|{precision}|{len(sequences)}".encode())
    for seq in sequences:
        digest.update(torch.tensor(seq.input_ids, dtype=torch.int64).numpy().tobytes())
        digest.update(torch.tensor(seq.labels, dtype=torch.int64).numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:24]


@contextlib.contextmanager
def as_reference(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (no dropout), with LoRA adapters disabled; restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with model.disable_adapter() if is_peft(model) else contextlib.nullcontext():
            yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def sequence_logps(model: nn.Module, sequences: Sequence[TokenizedExample], *, pad_id: int, batch_size: int,
                   precision: str = "fp32") -> Tensor:
    """Summed completion log-probs (N,) fp32 of each sequence, in batches sorted by length (little padding)."""
    device = next(model.parameters()).device
    out = torch.zeros(len(sequences))
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i].input_ids))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = sequences_collate([sequences[i] for i in idx], pad_id=pad_id)
        with autocast:
            selected = causal_lm_logps(model, batch["input_ids"].to(device), batch["labels"].to(device),
                                       attention_mask=batch["attention_mask"].to(device))
        out[idx] = selected.row_sums().float().cpu()
    return out


@torch.no_grad()
def shared_sequence_logps(model: nn.Module, sequences: Sequence[TokenizedExample], *, group_size: int, pad_id: int,
                          batch_size: int, precision: str = "fp32") -> Tensor:
    """`sequence_logps` for sequences that come in consecutive groups of `group_size` sharing a prompt (a pair's
    chosen and rejected), computed prefix-shared: each group's prompt once (`bridle.data.shared_prefix`).
    `batch_size` counts sequences, as in `sequence_logps`; batches are formed in stretch-length order."""
    device = next(model.parameters()).device
    groups = [sequences[i:i + group_size] for i in range(0, len(sequences), group_size)]
    out = torch.zeros(len(sequences))
    lengths = stretches_lengths(groups)
    order = sorted(range(len(groups)), key=lambda g: lengths[g])
    step = max(1, batch_size // group_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    for start in range(0, len(order), step):
        idx = order[start:start + step]
        batch = {k: v.to(device) for k, v in shared_prefix_collate([groups[g] for g in idx], pad_id=pad_id).items()}
        with autocast:
            sums, _ = sequence_sums(shared_prefix_token_logps(model, batch)[0], batch)
        slots = torch.tensor([g * group_size + j for g in idx for j in range(group_size)])
        out[slots] = sums.float().cpu()
    return out


def load_cached_logps(path: Path, count: int, *, log: Any = None) -> Tensor | None:
    """The cached log-probs (count,) at `path`, or None when there is no such file or it is unusable.

    An unusable entry (truncated, garbage, not a float tensor of shape (count,), non-finite values) is reported by
    path in one console line and deleted, so the caller recomputes it and the next run finds a good one."""
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, weights_only=True)
    except Exception as exc:  # truncated or garbage files raise whatever the unpickler meets
        problem = f"cannot be read ({type(exc).__name__})"
    else:
        if not isinstance(cached, Tensor) or not cached.is_floating_point():
            problem = f"holds {type(cached).__name__ if not isinstance(cached, Tensor) else cached.dtype}, not floats"
        elif tuple(cached.shape) != (count,):
            problem = f"has shape {tuple(cached.shape)}, not ({count},) for {count} sequences"
        elif not bool(torch.isfinite(cached).all()):
            problem = "holds non-finite values"
        else:
            return cached
    message = f"reference log-probs: cache file {path} {problem}; deleted it, recomputing"
    if log:
        log(message)
    else:  # reported even when the caller asked for no progress lines: one line, the path unbroken
        console.print(message, soft_wrap=True, markup=False)
    path.unlink(missing_ok=True)
    return None


def _host() -> str:
    """This machine's name as it appears in temporary cache file names (letters, digits, '.', '_' only)."""
    return re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, run by another user
        return True
    return True


TEMPORARY_NAME = re.compile(r"^[0-9a-f]+\.tmp-(?:(?P<host>[A-Za-z0-9._]+)-)?(?P<pid>\d+)$")


def remove_stale_temporary_files(folder: Path, *, log: Any = None) -> int:
    """Delete `<key>.tmp-<host>-<pid>` files that runs killed while saving left in the cache `folder`; returns how
    many. The folder may be shared by runs on several machines: only files of this host whose process is gone are
    removed (names without a host, from older versions, count as this host's)."""
    if sys.platform == "win32":  # os.kill(pid, 0) is not a liveness probe there
        return 0
    removed = 0
    for tmp in folder.glob("*.tmp-*"):
        match = TEMPORARY_NAME.match(tmp.name)
        if match is None or match["host"] not in (None, _host()) or _pid_alive(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):  # another run cleaning up at the same time
            tmp.unlink()
            removed += 1
    if removed and log:
        log(f"reference log-probs: removed {removed} temporary file(s) of killed runs from {folder}")
    return removed


def reference_logps(policy: nn.Module, sequences: Sequence[TokenizedExample], *, pad_id: int, batch_size: int,
                    max_length: int, precision: str = "fp32", reference_model: str = "", model_dtype: str = "float32",
                    cache: str | os.PathLike | None = None, log: Any = None, group_size: int = 0) -> Tensor:
    """Reference log-probs (N,) of `sequences`, from the disk cache when the same model and data were seen before.

    `group_size` > 0: the sequences come in consecutive groups of that many sharing a prompt, and are computed
    prefix-shared (`shared_sequence_logps`; the same values, so the cache key is the same) unless the reference
    cannot take the shared layout, which a one-line notice says.

    `reference_model` empty: the policy itself (as it is before training) with adapters disabled. Otherwise that
    model is loaded, used and freed here. `cache`: a directory, "none" to disable, None for <bridle cache>/reference.
    """
    reference = load_causal_lm(reference_model, dtype=model_dtype) if reference_model else policy
    try:
        fingerprint = f"{model_fingerprint(reference)}-{weights_digest(reference)}"
        key = reference_key(fingerprint, sequences, max_length=max_length, precision=precision)
        off = cache is not None and str(cache).lower() == "none"
        folder = None if off else Path(cache or cache_dir() / "reference").expanduser()
        path = folder / f"{key}.pt" if folder else None
        if folder is not None and folder.is_dir():
            remove_stale_temporary_files(folder, log=log)
        cached = load_cached_logps(path, len(sequences), log=log) if path is not None else None
        if cached is not None:
            if log:
                log(f"reference log-probs: {len(sequences)} sequences from cache {path}")
            return cached
        if reference is not policy:
            reference.to(next(policy.parameters()).device)
        if group_size > 1:
            problem = causal_lm_sharing_problem(reference, max_length=max_length)
            if problem is not None:
                (log or console.print)(fallback_notice(problem))
                group_size = 0
        with as_reference(reference):
            if group_size > 1:
                values = shared_sequence_logps(reference, sequences, group_size=group_size, pad_id=pad_id,
                                               batch_size=batch_size, precision=precision)
            else:
                values = sequence_logps(reference, sequences, pad_id=pad_id, batch_size=batch_size,
                                        precision=precision)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f"{path.stem}.tmp-{_host()}-{os.getpid()}"
            try:
                torch.save(values, tmp)
                os.replace(tmp, path)  # atomic: a killed run never leaves a half-written cache entry
            finally:
                tmp.unlink(missing_ok=True)  # a failed save (disk full) leaves no temporary file either
        if log:
            log(f"reference log-probs: computed for {len(sequences)} sequences" + (f", cached at {path}" if path
                                                                                    else ""))
        return values
    finally:
        if reference is not policy:
            del reference
            gc.collect()


class ReferenceMixin:
    """For methods whose loss reads reference log-probs (DPO family, KTO): before training, one pass of the
    reference over every item's sequences (`reference_logps`, cached on disk) writes each value onto its item.

    `reference_fields` maps each sequence attribute of an item to the item's field that receives its summed
    reference log-prob, e.g. {"chosen": "ref_chosen", "rejected": "ref_rejected"}; `collate` reads them back with
    `reference_tensor`."""

    config: Any
    tokenizer: Any
    needs_reference: ClassVar[bool] = True
    reference_fields: ClassVar[dict[str, str]] = {}

    def before_training(self, model: nn.Module, train_items: Sequence[Any], eval_items: Sequence[Any]) -> None:
        if not self.needs_reference:
            return
        items = [*train_items, *eval_items]
        slots = [(item, field) for item in items for field in self.reference_fields.values()]
        sequences = [getattr(item, name) for item in items for name in self.reference_fields]
        c = self.config
        values = reference_logps(model, sequences, pad_id=self.tokenizer.pad_token_id, batch_size=2 * c.batch_size,
                                 max_length=c.max_length, precision=c.precision, reference_model=c.reference_model,
                                 model_dtype=c.model_dtype, cache=c.reference_cache or None, log=console.print,
                                 group_size=len(self.reference_fields) if getattr(self, "share_prefix", False) else 0)
        for (item, field), value in zip(slots, values.tolist()):
            setattr(item, field, value)

    def reference_tensor(self, items: Sequence[Any], field: str) -> Tensor:
        """(B,) fp32: the items' `field` reference log-probs (set by `before_training`)."""
        values = [getattr(item, field) for item in items]
        if any(v is None for v in values):
            raise RuntimeError(f"{type(self).__name__} needs reference log-probs on its items ({field!r}): call "
                               "method.before_training(model, train_items, eval_items) before collating them.")
        return torch.tensor(values, dtype=torch.float32)
