"""Configs are dataclasses: one base with the engine's keys, one subclass per method. The same dataclass loads from
YAML and from CLI flags, and its field metadata holds the one-line help that `bridle <method> --help` shows."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from bridle import config_rules
from bridle.errors import ConfigError

C = TypeVar("C")


def option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:  # noqa: A002
    """A config field with its help line (and allowed values, checked on load)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    """Keys every method shares: model, data, and the engine's loop."""

    model: str = option("smollm2-135m", "model: alias (smollm2-135m, tiny-random), local HF directory, or hub id")
    data: str = option("", "training data: .jsonl/.json/.parquet/.csv file or hub dataset id")
    eval_data: str = option("", "held-out data file; empty = hold out --eval-fraction of --data")
    eval_fraction: float = option(0.0, "fraction of --data held out for evaluation when --eval-data is empty")
    output_dir: str = option("runs/<method>", "where config.yaml, metrics.jsonl, run.json, checkpoints and the model "
                             "go; <method> stands for the method's name")
    max_length: int = option(512, "max tokens per example (prompt + completion); longer ones are truncated")
    on_bad_row: str = option("error", "a malformed data row: stop with an error, or skip it and report",
                             ("error", "skip"))
    batch_size: int = option(4, "examples (or packed rows) per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    epochs: float = option(1.0, "passes over the training data (fractions allowed)")
    max_steps: int = option(-1, "optimizer steps to run; -1 = derive from --epochs")
    lr: float = option(2e-5, "peak learning rate (AdamW)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    lr_schedule: str = option("cosine", "learning-rate schedule after warmup", ("cosine", "linear", "constant"))
    warmup_ratio: float = option(0.0, "fraction of steps spent warming the LR up linearly from 0")
    max_grad_norm: float = option(1.0, "clip the global gradient norm to this; 0 = no clipping")
    precision: str = option("fp32", "fp32, or bf16 autocast (mixed precision)", ("fp32", "bf16"))
    model_dtype: str = option("float32", "dtype the weights are loaded in", ("float32", "bfloat16"))
    attn_implementation: str = option("auto", "attention kernel: auto (transformers picks what the architecture "
                                      "supports), sdpa, eager, flash_attention_2, ...")
    chat_template: str = option("auto", "how conversations are rendered: auto (the tokenizer's own template), a "
                                "built-in (chatml, llama3, zephyr, alpaca, plain), or a .jinja file")
    disable_dropout: bool = option(True, "set every dropout to 0 while training (as TRL does for preference and "
                                   "RL methods); the policy and its reference then see the same network")
    gradient_checkpointing: bool = option(False, "recompute activations in backward to save memory")
    seed: int = option(0, "seed for data order, init and noise")
    log_every: int = option(10, "log metrics every N optimizer steps")
    eval_every: int = option(0, "evaluate every N steps (0 = only at the end, when there is eval data)")
    eval_on_start: bool = option(False, "evaluate once before the first step (a baseline for the eval curve)")
    stop_when: str = option("", "stop before the step budget when a metric crosses a bound: comma-separated "
                            "METRIC OP NUMBER, e.g. \"eval/reward>=0.8, kl>6\" (kl = kl/ref, reward = reward/mean)")
    patience: int = option(0, "stop when --patience-metric has not improved for this many evaluations (0 = off; "
                           "needs --eval-every and eval data)")
    patience_metric: str = option("eval/loss", "the eval metric --patience watches")
    patience_mode: str = option("auto", "whether --patience-metric should go down (min) or up (max); auto: min for "
                                "losses and KL, max otherwise", ("auto", "min", "max"))
    save_every: int = option(0, "write a resumable checkpoint every N steps (0 = only the final model)")
    keep_checkpoints: int = option(2, "how many resumable checkpoints to keep")
    resume: str = option("no", "continue the run in --output-dir from its newest checkpoint: yes (a bare --resume), "
                         "no, or auto (resume when there is one, else start fresh)", ("no", "yes", "auto"))
    overwrite: bool = option(False, "clear --output-dir first when it holds another run's files")
    max_nonfinite_steps: int = option(3, "a step whose loss or gradient is NaN/inf is skipped; stop after this many "
                                      "in a row")
    report_to: str = option("none", "extra trackers, comma-separated: tensorboard, wandb, mlflow, or none")
    progress: bool = option(True, "show a progress bar (only on a terminal)")
    num_processes: int = option(1, "training processes on this machine (one per GPU; on CPU they share the cores "
                                "over gloo); each takes --batch-size examples, so the global batch is "
                                "--batch-size × processes × --grad-accum. See docs/scaling.md")
    accelerate_config: str = option("", "an `accelerate config` YAML (configs/accelerate/ddp.yaml, fsdp.yaml, "
                                    "zero2.yaml, zero3.yaml) to launch with; empty = plain data parallel (DDP)")
    lora: bool = option(False, "train LoRA adapters instead of all weights")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = option(0.0, "LoRA dropout")
    lora_target_modules: str = option("all-linear", "LoRA target modules: all-linear or comma-separated names")
    merge_lora: bool = option(False, "save LoRA merged into full weights instead of an adapter")


def fields_of(cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_type(cls: type, f: dataclasses.Field) -> type:
    """The plain Python type of a field (resolving `from __future__ import annotations` strings)."""
    tp = _type_hints(cls)[f.name]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def parse_bool(value: Any) -> bool:
    """A bool from YAML or a flag: true/false, yes/no, 1/0 in any case (a bare switch flag arrives as True)."""
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ValueError(value)


LIST_SEPARATORS = {"report_to": ",", "lora_target_modules": ",", "reward": ",", "stop": "|"}
"""String keys that hold a list, and their separator: a YAML list is read as the joined string."""


def checked_value(cls: type, name: str, value: Any, label: str | None = None) -> Any:
    """One known key's value, converted to the field's type and checked against its choices (ConfigError if not).

    `label` is how the message names the key (e.g. the familiar name the user wrote); default: the key."""
    f = next(f for f in fields_of(cls) if f.name == name)
    tp = field_type(cls, f)
    label = label or repr(name)
    if name == "resume":  # no | yes | auto, and the true / false of YAML files and older configs
        try:
            value = _resume(value)
        except ConfigError as err:
            raise ConfigError(f"key {label}: {err}") from None
    try:
        if tp is bool and isinstance(value, str):
            value = parse_bool(value)
        elif tp is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            value = float(value)
        elif tp is int and isinstance(value, str):
            value = int(value)
        elif tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        elif name in LIST_SEPARATORS and isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = LIST_SEPARATORS[name].join(value)
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ValueError(value)
    except ValueError:
        raise ConfigError(f"key {label} must be a {tp.__name__}, got {value!r}.") from None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"key {label} must be one of {', '.join(choices)}; got {value!r}.")
    return value


def coerce(cls: type, name: str, value: Any, where: str) -> Any:
    """Check one key's value against the dataclass field: known key, right type, allowed choice."""
    if name not in {f.name for f in fields_of(cls)}:
        raise ConfigError(f"{where}: {unknown_key_problem(cls, name)} `bridle <method> --help` lists every key.")
    try:
        return checked_value(cls, name, value)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


# -- familiar names: what TRL, transformers, LLaMA-Factory and axolotl users type --------------------------------------

DROP = object()
"""What an alias's `convert` returns when the value sets no key at all (`fp16: false`)."""


@dataclass(frozen=True)
class Alias:
    """A name another trainer uses for one of Bridle's keys.

    key:     the Bridle key it sets; None when Bridle has no equivalent (then `nearest` names the keys to use
             instead and `note` says why, and using the name is a ConfigError).
    used_by: where users know the name from.
    note:    how the value is read, when not as is (shown in docs/cli.md).
    convert: familiar value -> Bridle value (may raise ConfigError, or return DROP).
    switch:  a bare `--name` means true, as with Hugging Face's argument parser (`--bf16`).
    """

    key: str | None
    used_by: str
    note: str = ""
    convert: Callable[[Any], Any] | None = None
    switch: bool = False
    nearest: tuple[str, ...] = ()


def _switch_value(value: Any) -> bool:
    try:
        return parse_bool(value)
    except ValueError:
        raise ConfigError(f"must be true or false; got {value!r}.") from None


def _bf16(value: Any) -> str:
    return "bf16" if _switch_value(value) else "fp32"


def _fp16(value: Any) -> Any:
    if _switch_value(value):
        raise ConfigError("fp16 is not supported by Bridle's engine (it would need loss scaling). Use bf16 mixed "
                          "precision instead: --precision bf16 (or --bf16; in YAML, precision: bf16), else fp32.")
    return DROP


def _resume(value: Any) -> str:
    """`resume` (and `resume_from_checkpoint`) as no | yes | auto; true / false (YAML, a bare flag) read as yes / no."""
    if value is None or str(value).lower() in ("", "none", "null"):
        return "no"
    if str(value).lower() in ("auto", "yes", "no"):
        return str(value).lower()
    try:
        return "yes" if parse_bool(value) else "no"
    except ValueError:
        pass
    if "/" in str(value) or os.sep in str(value) or "checkpoint" in str(value):
        raise ConfigError(f"Bridle resumes from the newest checkpoint in the output dir, not from a path ({value!r}). "
                          "Pass that run's dir and resume: --output-dir RUN_DIR --resume.")
    raise ConfigError(f"must be yes, no or auto (true / false read as yes / no); got {value!r}.")


def _lr_scheduler(value: Any) -> Any:
    return "constant" if value == "constant_with_warmup" else value


def _finetuning_type(value: Any) -> bool:
    kinds = {"lora": True, "full": False}
    if value not in kinds:
        raise ConfigError(f"{value!r} is not supported; Bridle trains LoRA adapters (--lora) or all weights "
                          "(--no-lora).")
    return kinds[value]


def _lora_target(value: Any) -> Any:
    return "all-linear" if value == "all" else value


TF, LF, AX = "transformers / TRL", "LLaMA-Factory", "axolotl"
ALIASES: dict[str, Alias] = {
    # model and data
    "model_name_or_path": Alias("model", f"{TF}, {LF}"),
    "base_model": Alias("model", AX),
    "dataset_name": Alias("data", "TRL"),
    "dataset": Alias("data", LF),
    "eval_dataset": Alias("eval_data", LF),
    "max_seq_length": Alias("max_length", "TRL (older SFTConfig)"),
    "cutoff_len": Alias("max_length", LF),
    "sequence_len": Alias("max_length", AX),
    # the engine's loop
    "per_device_train_batch_size": Alias("batch_size", TF),
    "micro_batch_size": Alias("batch_size", AX),
    "gradient_accumulation_steps": Alias("grad_accum", f"{TF}, {LF}, {AX}"),
    "learning_rate": Alias("lr", f"{TF}, {LF}, {AX}"),
    "num_train_epochs": Alias("epochs", f"{TF}, {LF}"),
    "num_epochs": Alias("epochs", AX),
    "lr_scheduler_type": Alias("lr_schedule", f"{TF}, {LF}", "constant_with_warmup is read as constant (Bridle "
                               "warms up for warmup_ratio before any schedule)", _lr_scheduler),
    "lr_scheduler": Alias("lr_schedule", AX, "constant_with_warmup is read as constant", _lr_scheduler),
    "bf16": Alias("precision", f"{TF}, {LF}, {AX}", "true is read as precision bf16, false as fp32", _bf16,
                  switch=True),
    "fp16": Alias("precision", f"{TF}, {LF}, {AX}", "true is an error (no fp16 engine: use bf16); false is ignored",
                  _fp16, switch=True),
    "logging_steps": Alias("log_every", f"{TF}, {LF}, {AX}"),
    "eval_steps": Alias("eval_every", f"{TF}, {LF}, {AX}"),
    "save_steps": Alias("save_every", f"{TF}, {LF}, {AX}"),
    "save_total_limit": Alias("keep_checkpoints", f"{TF}, {LF}, {AX}"),
    "resume_from_checkpoint": Alias("resume", f"{TF}, {LF}, {AX}", "true / false; a checkpoint path is an error "
                                    "(Bridle resumes from the newest checkpoint in the output dir)", _resume,
                                    switch=True),
    "neftune_noise_alpha": Alias("neftune_alpha", f"{TF}, {LF}"),
    # LoRA
    "use_peft": Alias("lora", "TRL"),
    "finetuning_type": Alias("lora", LF, "lora is read as true, full as false; freeze is an error",
                             _finetuning_type),
    "lora_rank": Alias("lora_r", LF),
    "lora_target": Alias("lora_target_modules", LF, "all is read as all-linear", _lora_target),
    # preference and online methods
    "loss_type": Alias("loss", "TRL DPOConfig"),
    "num_generations": Alias("num_samples", "TRL GRPOConfig, RLOOConfig"),
    "rloo_k": Alias("num_samples", "TRL RLOOConfig (older)"),
    "max_completion_length": Alias("max_new_tokens", "TRL GRPOConfig"),
    "response_length": Alias("max_new_tokens", "TRL PPOConfig"),
    "epsilon": Alias("clip_eps", "TRL GRPOConfig"),
    "epsilon_high": Alias("clip_eps_high", "TRL GRPOConfig"),
    "cliprange": Alias("clip_eps", "TRL PPOConfig"),
    "cliprange_value": Alias("vf_clip", "TRL PPOConfig"),
    "kl_coef": Alias("beta", "TRL PPOConfig"),
    "num_ppo_epochs": Alias("update_epochs", "TRL PPOConfig"),
    # familiar names with no Bridle equivalent: an error that names the keys to use
    "per_device_eval_batch_size": Alias(None, TF, "evaluation runs in micro-batches of the training batch size",
                                        nearest=("batch_size",)),
    "warmup_steps": Alias(None, f"{TF}, {LF}, {AX}", "Bridle's warmup is a fraction of the steps",
                          nearest=("warmup_ratio",)),
    "eval_strategy": Alias(None, f"{TF}, {LF}", "Bridle evaluates every N steps (0 = only at the end)",
                           nearest=("eval_every",)),
    "save_strategy": Alias(None, f"{TF}, {LF}", "Bridle checkpoints every N steps (0 = only the final model)",
                           nearest=("save_every",)),
}
"""Familiar names from other trainers, read as Bridle keys, the same way in YAML files and as flags
(`--learning_rate 3e-4` is `--lr 3e-4`). A name is read only for a method whose config has its key; elsewhere it is
an error that says so. Names that already are Bridle keys (seed, warmup_ratio, weight_decay, max_grad_norm,
adam_beta1, output_dir, report_to, lora_r, gradient_checkpointing, ...) need no alias: every key is also accepted
with underscores. docs/cli.md shows this table (`alias_table()`); a test keeps the two the same."""


def alias_table() -> str:
    """ALIASES as the Markdown table docs/cli.md shows."""
    rows = ["| familiar name | Bridle key | used by | how it is read |", "| --- | --- | --- | --- |"]
    for name, alias in ALIASES.items():
        key = f"`{alias.key}`" if alias.key else "none"
        note = alias.note if alias.key else f"error: {alias.note}; use " + ", ".join(f"`{k}`" for k in alias.nearest)
        rows.append(f"| `{name}` | {key} | {alias.used_by} | {note} |")
    return "\n".join(rows)


def show_name(name: str, *, as_flag: bool) -> str:
    """A key or familiar name as the user writes it: `--batch-size` / `--learning_rate` on the command line,
    'batch_size' in YAML."""
    if not as_flag:
        return repr(name)
    return "--" + (name if name in ALIASES else name.replace("_", "-"))


def _show_setting(name: str, value: Any, *, as_flag: bool) -> str:
    if isinstance(value, list):
        value = ",".join(map(str, value))
    if not as_flag:
        return f"{name}: {str(value).lower() if isinstance(value, bool) else value}"
    if isinstance(value, bool) and name not in ALIASES:
        return show_name(name if value else "no_" + name, as_flag=True)
    return show_name(name, as_flag=True) + ("" if value is True else f" {value}")


def closest_name(cls: type, name: str, *, as_flag: bool) -> str | None:
    """The key, `--no-` flag, or familiar name of `cls` nearest to `name`, as a "did you mean" shows it."""
    candidates: dict[str, str] = {}
    for f in fields_of(cls):
        candidates[f.name] = show_name(f.name, as_flag=as_flag)
        if as_flag and field_type(cls, f) is bool:
            candidates["no_" + f.name] = "--no-" + f.name.replace("_", "-")
    for alias_name, alias in ALIASES.items():
        if alias.key in candidates and alias_name not in candidates:
            candidates[alias_name] = (f"{show_name(alias_name, as_flag=as_flag)} (read as "
                                      f"{show_name(alias.key, as_flag=as_flag)})")
    close = difflib.get_close_matches(name, candidates, n=1)
    return candidates[close[0]] if close else None


def unknown_key_problem(cls: type, name: str) -> str:
    close = closest_name(cls, name, as_flag=False)
    return f"unknown key {name!r}." + (f" Did you mean {close}?" if close else "")


def alias_problem(cls: type, name: str, *, as_flag: bool, owner: str | None = None) -> str | None:
    """Why the familiar name `name` cannot be read for `cls` (no Bridle equivalent, or a key `cls` lacks);
    None when it can, or when it is no familiar name. `owner` names `cls` in the message (e.g. "`bridle sft`")."""
    alias = ALIASES.get(name)
    keys = {f.name for f in fields_of(cls)}
    if alias is None or name in keys:
        return None
    shown = f"{show_name(name, as_flag=as_flag)} ({alias.used_by})"
    if alias.key is None:
        nearest = " or ".join(show_name(k, as_flag=as_flag) for k in alias.nearest)
        return f"{shown} has no Bridle equivalent: {alias.note}. Use {nearest}."
    if alias.key not in keys:
        return (f"{shown} is read as {show_name(alias.key, as_flag=as_flag)}, which {owner or cls.__name__} "
                "does not have.")
    return None


def read_keys(cls: type, raw: dict[str, Any], where: str, *, as_flag: bool,
              owner: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """One layer of keys (a YAML file's, or the flags'), familiar names resolved: (values by key, notes by alias).

    Every problem of the layer (unknown names, a key set twice, bad values) is listed in one ConfigError."""
    keys = {f.name for f in fields_of(cls)}
    values: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    notes: dict[str, str] = {}
    problems: list[str] = []
    unknown = False
    for name, value in raw.items():
        key, label = name, None
        if name not in keys:
            alias = ALIASES.get(name)
            if alias is None:
                problems.append(unknown_key_problem(cls, name))
                unknown = True
                continue
            problem = alias_problem(cls, name, as_flag=as_flag, owner=owner)
            if problem:
                problems.append(problem)
                continue
            key = alias.key
            said, read_as = show_name(name, as_flag=as_flag), show_name(key, as_flag=as_flag)
            label = f"{said} (read as {read_as})"
            if alias.convert:
                try:
                    converted = alias.convert(value)
                except ConfigError as err:
                    problems.append(f"{said}: {err}")
                    continue
                if converted is DROP:
                    notes[name] = f"{_show_setting(name, value, as_flag=as_flag)} is ignored"
                    continue
                said = _show_setting(name, value, as_flag=as_flag)
                read_as = _show_setting(key, converted, as_flag=as_flag)
                value = converted
            notes[name] = f"{said} is read as {read_as}"
        if key in given_as:
            problems.append(f"{show_name(given_as[key], as_flag=as_flag)} and {show_name(name, as_flag=as_flag)} both "
                            f"set {show_name(key, as_flag=as_flag)}; keep one.")
            continue
        given_as[key] = name
        try:
            values[key] = checked_value(cls, key, value, label)
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        tail = " `bridle <method> --help` lists every key; docs/cli.md, the familiar names it reads." if unknown else ""
        if len(problems) == 1:
            raise ConfigError(f"{where}: {problems[0]}{tail}")
        listed = "\n".join(f"- {p}" for p in problems)
        raise ConfigError(f"{where}: {len(problems)} problems:\n{listed}" + (f"\n{tail.strip()}" if tail else ""))
    if not as_flag:
        notes = {name: f"{where}: {text}" for name, text in notes.items()}
    return values, notes


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found.")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err}).") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: must be a mapping of key: value.")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def build_config(cls: type[C], yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None, *,
                 note: Callable[[str], None] | None = None, owner: str | None = None) -> C:
    """Defaults, then the YAML file, then explicit overrides (CLI flags, by key or familiar name): later wins.

    Both may use the familiar names of ALIASES; `note` hears once per familiar name how it was read (the CLI prints
    it). `owner` names `cls` in messages (e.g. "`bridle sft`")."""
    values: dict[str, Any] = {}
    heard: set[str] = set()
    layers = [(load_yaml(yaml_path), str(yaml_path), False)] if yaml_path else []
    layers.append((overrides or {}, "command line", True))
    for raw, where, as_flag in layers:
        layer, notes = read_keys(cls, raw, where, as_flag=as_flag, owner=owner)
        values.update(layer)
        for name, text in notes.items():
            if note and name not in heard:
                note(text)
            heard.add(name)
    config = cls(**values)
    validate(config, note)
    return config


def validate(config: TrainConfig, note: Callable[[str], None] | None = None) -> None:
    """Value rules that a type alone cannot express (ranges, finiteness, a writable output dir): see config_rules."""
    config_rules.validate(config, note)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
