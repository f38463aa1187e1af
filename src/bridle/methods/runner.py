"""Run one method end to end: tokenizer, data, model (+LoRA), engine, final HF checkpoint, run records."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import torch
import yaml
from transformers import set_seed

import bridle
from bridle.config import TrainConfig, to_dict
from bridle.engine import Engine, TrainResult
from bridle.engine.distributed import check_process_count, process_rank, world_size
from bridle.engine.logging import console
from bridle.engine.rundir import claim_run_dir
from bridle.methods.base import Method, output_dir_for
from bridle.models import disable_dropout, load_tokenizer, model_fingerprint


def data_fingerprint(source: str) -> str:
    """sha256 of a data file's bytes (or of the hub id / name when it is not a local file), 16 hex digits."""
    digest = hashlib.sha256()
    path = Path(source)
    if path.is_file():
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(source.encode())
    return digest.hexdigest()[:16]


def versions() -> dict[str, str]:
    import accelerate
    import peft
    import transformers

    return {"bridle": bridle.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "peft": peft.__version__}


def run(method_cls: type[Method], config: TrainConfig) -> TrainResult:
    """Train `method_cls` with `config` into its output dir, which this run owns while it lasts (`claim_run_dir`:
    its lock, a check that the dir holds no other run and that --resume has a checkpoint of this config, both made
    before anything loads)."""
    config.output_dir = output_dir_for(config, method_cls.name)  # runs/<method> by default
    check_process_count(config)
    with claim_run_dir(config, method_cls.name) as fingerprint:
        return _train(method_cls, config, fingerprint)


def _train(method_cls: type[Method], config: TrainConfig, fingerprint: str) -> TrainResult:
    started = time.time()
    set_seed(config.seed)
    tokenizer = load_tokenizer(config.model, max_length=config.max_length, chat_template=config.chat_template)
    method = method_cls(config, tokenizer)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with console.status("loading and tokenizing data"):
        train_items, eval_items, report = method.build_datasets()
    console.print(report)
    model = method.build_model()
    if config.disable_dropout:  # every model the method built: policy, value head, critic (LoRA dropout kept)
        disable_dropout(model)
    method.prepare_model(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    console.print(f"model {config.model}: {total / 1e6:.1f}M parameters, {trainable / 1e6:.2f}M trainable")
    main = process_rank() == 0  # in a launch of several processes only the main one writes the run's files
    if main:
        (out / "config.yaml").write_text(yaml.safe_dump({"method": method_cls.name, **to_dict(config)},
                                                        sort_keys=False))
    run_info = {"method": method_cls.name, "config_fingerprint": fingerprint, "command": sys.argv,
                "seed": config.seed, "versions": versions(),
                "model": config.model, "model_fingerprint": model_fingerprint(method.policy_of(model)),
                "data": config.data, "data_fingerprint": data_fingerprint(config.data),
                "train_items": len(train_items), "eval_items": len(eval_items), "data_report": report,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                "num_processes": world_size()}
    if main:
        (out / "run.json").write_text(json.dumps(run_info, indent=1))
    method.before_training(model, train_items, eval_items)
    engine = Engine(config, model, method, train_items, eval_items)
    result = engine.fit()
    trained = engine.unwrapped_model
    gathered = engine.full_state_dict()  # FSDP / DeepSpeed: every process takes part; None when not sharded
    if not main:
        engine.close()  # waits while the main process saves the model
        return result
    if gathered is not None:  # a sharded run (FSDP on CPU tested; GPU ones not): the gathered weights in a fresh copy
        trained = method.build_model()
        method.prepare_model(trained)
        trained.load_state_dict(gathered)
    final = method.save(trained, out / "model")
    run_info.update(method.finish(trained, final))
    run_info.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), steps=result.steps,
                    planned_steps=engine.total_steps, stopped_by=result.stopped_by,
                    train_metrics=result.train_metrics, eval_metrics=result.eval_metrics,
                    tokens_per_second=result.tokens_per_second, train_seconds=result.seconds)
    (out / "run.json").write_text(json.dumps(run_info, indent=1))
    stopped = f", stopped early: {result.stopped_by}" if result.stopped_by else ""
    console.print(f"saved model to {final}  ({result.steps} steps, {result.tokens_per_second:,.0f} tokens/s{stopped})")
    engine.close()
    return result
