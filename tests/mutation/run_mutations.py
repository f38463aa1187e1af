"""Mutation check: plant one bug at a time in a copy of the package, run the tests that should catch it, and report
which bugs the tests let through.

    python tests/mutation/run_mutations.py                 # every mutant, 2 at a time (a few minutes)
    python tests/mutation/run_mutations.py --list          # names and what each one breaks
    python tests/mutation/run_mutations.py --check         # only check every snippet is still in the code
    python tests/mutation/run_mutations.py -k ppo -k grpo  # mutants whose name contains ppo or grpo

Each mutant is (file under src/bridle, an exact snippet of the current code, its replacement, the tests to run).
Before anything runs, every snippet must occur exactly once in its file, else the script stops and names it: when
the code changes, the list is updated with it instead of silently testing nothing. Then the tests of all mutants
run once on the unmodified copy (they must pass, or "killed" would mean nothing), and each mutant runs its tests
(`pytest -x`) in its own worker copy of src/ and tests/ (with PYTHONPATH pointing at the copy, and its own
BRIDLE_CACHE so no cached reference log-probs hide a bug). A mutant is killed when a test fails (or the run times
out), survived when they all pass. The last line printed is one JSON object: the score, the survivors, the time.
Exit status 0 when every mutant is killed, 1 otherwise, 2 when the list or the baseline is broken.

Why a planted list and not mutmut: mutmut 3.8 (pip-installable here) mutates every expression of the four packages,
a thousand or so mutants, most in metrics, messages and shapes, and runs the tests per mutant through its own
trampolines; with torch and transformers imported by every test process on a 2-core machine that is hours, and its
survivors would mostly be equivalent mutants (a metric's name, a docstring, a default that a test overrides). The
bugs that matter here are keys that silently stop reaching the math, which the list below names one by one, each
with the handful of tests meant to catch it; the whole run takes a few minutes and its score means something.
To add a mutant: copy a line of code that a key or an objective depends on, break it the way a refactor could, and
point it at the tests that pin that behaviour. The first six are the bugs of issue 11.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "bridle"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # under src/bridle
    original: str  # must occur exactly once in the file
    replacement: str
    tests: tuple[str, ...]  # pytest arguments (paths, node ids, -k expressions)
    why: str = ""


M = "tests/unit/methods"
E = "tests/unit/engine"
O = "tests/unit/objectives"  # noqa: E741
OPS = "tests/unit/ops"
D = "tests/integration/test_distributed_cli.py"
R = "tests/unit/rollout"

MUTANTS: list[Mutant] = [
    # -- the six bugs of issue 11 ---------------------------------------------------------------------------------
    Mutant("dpo-ignores-loss-and-label-smoothing", "methods/dpo.py",
           'if cfg.loss == "sigmoid":\n            return objectives.dpo(*args, beta=cfg.beta, '
           'label_smoothing=cfg.label_smoothing)',
           "return objectives.dpo(*args, beta=cfg.beta)",
           (f"{M}/test_wiring_dpo.py",), "always plain sigmoid DPO"),
    Mutant("engine-ignores-precision", "engine/loop.py",
           'mixed_precision="bf16" if config.precision == "bf16" else "no",', 'mixed_precision="no",',
           (f"{E}/test_engine.py::test_bf16_precision_runs_the_step_under_bf16_autocast",)),
    Mutant("grpo-step-passes-beta-zero", "methods/grpo.py",
           "clip_eps_high=c.clip_eps_high or None, beta=c.beta,", "clip_eps_high=c.clip_eps_high or None, beta=0.0,",
           (f"{M}/test_wiring_online.py", "-k", "grpo_step")),
    Mutant("rloo-aggregation-token", "methods/grpo.py",
           'aggregation="sequence_sum")', 'aggregation="token")',
           (f"{M}/test_wiring_online.py", "-k", "rloo")),
    Mutant("collate-weight-always-tokens", "methods/online.py",
           'weight = "tokens" if self.aggregation == "token" else "sequences"', 'weight = "tokens"',
           (f"{M}/test_wiring_online.py", "-k", "collate_weight")),
    Mutant("ppo-value-loss-dropped", "methods/ppo.py",
           "return StepOutput(policy_loss + c.vf_coef * value_loss, metrics)",
           "return StepOutput(policy_loss, metrics)",
           (f"{M}/test_wiring_ppo.py", "-k", "shared")),
    # -- preference methods -----------------------------------------------------------------------------------
    Mutant("dpo-sigmoid-drops-label-smoothing", "methods/dpo.py",
           "return objectives.dpo(*args, beta=cfg.beta, label_smoothing=cfg.label_smoothing)",
           "return objectives.dpo(*args, beta=cfg.beta)", (f"{M}/test_wiring_dpo.py",)),
    Mutant("dpo-beta-at-its-default", "methods/dpo.py",
           "return objectives.dpo(*args, beta=cfg.beta, label_smoothing=cfg.label_smoothing)",
           "return objectives.dpo(*args, beta=0.1, label_smoothing=cfg.label_smoothing)", (f"{M}/test_wiring_dpo.py",)),
    Mutant("robust-dpo-drops-label-smoothing", "methods/dpo.py",
           "return objectives.robust_dpo(*args, beta=cfg.beta, label_smoothing=cfg.label_smoothing)",
           "return objectives.robust_dpo(*args, beta=cfg.beta)", (f"{M}/test_wiring_dpo.py", "-k", "robust")),
    Mutant("ipo-per-token-ignored", "methods/dpo.py", "if cfg.ipo_per_token else {}", "if False else {}",
           (f"{M}/test_wiring_dpo.py", "-k", "ipo")),
    Mutant("hinge-falls-back-to-dpo", "methods/dpo.py", "return objectives.hinge(*args, beta=cfg.beta)",
           "return objectives.dpo(*args, beta=cfg.beta)", (f"{M}/test_wiring_dpo.py", "-k", "hinge")),
    Mutant("simpo-gamma-ignored", "methods/dpo.py", "gamma=self.config.gamma)", "gamma=1.0)",
           (f"{M}/test_wiring_dpo.py", "-k", "simpo")),
    Mutant("simpo-beta-ignored", "methods/dpo.py",
           "return objectives.simpo(chosen, rejected, chosen_len, rejected_len, beta=self.config.beta,",
           "return objectives.simpo(chosen, rejected, chosen_len, rejected_len, beta=2.0,",
           (f"{M}/test_wiring_dpo.py", "-k", "simpo")),
    Mutant("orpo-lambda-ignored", "methods/dpo.py", "lam=self.config.lam)", "lam=0.1)",
           (f"{M}/test_wiring_dpo.py", "-k", "orpo")),
    Mutant("orpo-nll-mean-of-row-means", "methods/dpo.py",
           "nll = -chosen.sum() / (tokens_per_pair * len(chosen)).clamp(min=1)",
           "nll = -(chosen / chosen_len.clamp(min=1)).mean()", (f"{M}/test_wiring_dpo.py", "-k", "orpo")),
    Mutant("kto-beta-ignored", "methods/kto.py", "beta=cfg.beta, desirable_weight=", "beta=0.1, desirable_weight=",
           (f"{M}/test_wiring_kto.py",)),
    Mutant("kto-desirable-weight-ignored", "methods/kto.py", "desirable_weight=cfg.desirable_weight,",
           "desirable_weight=1.0,", (f"{M}/test_wiring_kto.py",)),
    Mutant("kto-undesirable-weight-is-the-desirable-one", "methods/kto.py",
           "undesirable_weight=cfg.undesirable_weight,", "undesirable_weight=cfg.desirable_weight,",
           (f"{M}/test_wiring_kto.py",)),
    Mutant("kto-kl-twins-ignored", "methods/kto.py", 'batch["desirable"], kl_logps, batch["ref_kl_logps"],',
           'batch["desirable"], batch["ref_kl_logps"], batch["ref_kl_logps"],', (f"{M}/test_wiring_kto.py",),
           "z0 = 0"),
    Mutant("rrhf-sft-weight-ignored", "methods/rrhf.py", "sft_weight=self.config.sft_weight)", "sft_weight=1.0)",
           (f"{M}/test_wiring_rrhf.py",)),
    Mutant("rm-margin-ignored", "methods/rm.py", 'margin=batch["margin"],', "margin=None,",
           (f"{M}/test_wiring_rm.py",)),
    Mutant("rm-center-coef-ignored", "methods/rm.py", "center_coef=self.config.center_coef)", "center_coef=0.0)",
           (f"{M}/test_wiring_rm.py",)),
    Mutant("dpo-reference-sides-swapped", "methods/dpo.py",
           'batch["ref_chosen"] = self.reference_tensor(items, "ref_chosen")',
           'batch["ref_chosen"] = self.reference_tensor(items, "ref_rejected")',
           (f"{M}/test_wiring_dpo.py", "-k", "reference_logps_of")),
    Mutant("dpo-padding-free-sums-whole-rows", "methods/dpo.py", 'if "segment" not in batch:', "if True:",
           (f"{M}/test_wiring_dpo.py", "-k", "padding_free")),
    Mutant("kto-reference-of-the-kl-twin", "methods/kto.py", 'ref_logps=self.reference_tensor(items, "ref_logps"),',
           'ref_logps=self.reference_tensor(items, "ref_kl_logps"),', (f"{M}/test_wiring_kto.py",)),
    Mutant("rm-padding-free-scores-at-eos", "methods/rm.py",
           "ends = packed_score_ends([s.input_ids for s in sequences], self.tokenizer.pad_token_id)",
           "ends = torch.tensor([len(s.input_ids) for s in sequences]).cumsum(0) - 1",
           (f"{M}/test_wiring_rm.py", "-k", "True"), "the last token (EOS) instead of the last non-pad one"),
    Mutant("reference-keeps-the-lora-adapter-on", "methods/reference.py",
           "with model.disable_adapter() if is_peft(model) else contextlib.nullcontext():",
           "with contextlib.nullcontext():",
           (f"{M}/test_reference_cache.py::test_lora_reference_is_the_base_with_the_adapter_disabled",)),
    # -- SFT ------------------------------------------------------------------------------------------------------
    Mutant("sft-collate-weight-counts-rows", "methods/sft.py", 'batch["weight"] = batch.pop("num_loss_tokens")',
           'batch.pop("num_loss_tokens")\n        batch["weight"] = len(items)',
           (f"{M}/test_wiring_sft.py", "-k", "token_mean")),
    Mutant("sft-completion-only-ignored", "methods/sft.py", "completion_only=cfg.completion_only",
           "completion_only=True", (f"{M}/test_wiring_sft.py", "-k", "completion_only")),
    Mutant("sft-neftune-ignored", "methods/sft.py", "if self.config.neftune_alpha > 0:", "if False:",
           (f"{M}/test_wiring_sft.py", "-k", "neftune")),
    # -- the engine -----------------------------------------------------------------------------------------------
    Mutant("engine-micro-batches-weighted-equally", "engine/loop.py",
           "acc.backward(out.loss * weights[i] * scale)",
           "acc.backward(out.loss / len(batches))",
           (f"{E}/test_engine_wiring.py::test_micro_batches_are_weighted_by_their_loss_tokens_as_one_big_batch",)),
    Mutant("engine-logged-loss-unweighted", "engine/loop.py",
           "(weight * _to_float(value) if weight else 0.0)",
           "_to_float(value) * float(weights.sum()) / len(batches)",
           (f"{E}/test_engine_wiring.py::test_micro_batches_are_weighted_by_their_loss_tokens_as_one_big_batch",)),
    Mutant("engine-lr-ignored", "engine/loop.py", "AdamW(params, lr=config.lr,", "AdamW(params, lr=2e-5,",
           (f"{E}/test_engine_wiring.py::test_first_adamw_step_applies_lr_and_weight_decay",)),
    Mutant("engine-no-gradient-clipping", "engine/loop.py", "if self.config.max_grad_norm > 0:", "if False:",
           (f"{E}/test_engine_wiring.py::test_max_grad_norm_clips_the_global_gradient_norm",)),
    Mutant("engine-no-warmup", "engine/loop.py", "warmup_steps=round(config.warmup_ratio * self.total_steps)",
           "warmup_steps=0",
           (f"{E}/test_engine_wiring.py::test_warmup_ratio_ramps_the_learning_rate_before_the_schedule",)),
    # -- several processes (issue 18): 2 CPU processes over gloo must train as 1 with the same global batch --------
    Mutant("engine-ddp-scale-dropped", "engine/loop.py", "scale = acc.num_processes / total",
           "scale = 1 / total",
           (f"{D}::test_two_sft_processes_match_one_with_the_same_global_batch_and_see_each_item_once",)),
    Mutant("engine-schedule-stepped-per-process", "engine/loop.py", "step_scheduler_with_optimizer=False)",
           "step_scheduler_with_optimizer=True)",
           (f"{D}::test_two_sft_processes_match_one_with_the_same_global_batch_and_see_each_item_once",)),
    Mutant("engine-metrics-of-the-main-process-only", "engine/loop.py",
           "**reduce_weighted_means(acc, sums, float(total))}",
           "**{k: v / float(weights.sum()) for k, v in sums.items()}}",
           (f"{D}::test_two_sft_processes_match_one_with_the_same_global_batch_and_see_each_item_once",)),
    Mutant("engine-data-not-sharded", "engine/batches.py", "mine = chunk[self.process_index::self.num_processes]",
           "mine = chunk[::self.num_processes]",
           (f"{D}::test_two_sft_processes_match_one_with_the_same_global_batch_and_see_each_item_once",)),
    Mutant("online-experience-not-exchanged", "methods/online.py", "items = gather_lists(items)  #",
           "items = list(items)  #",
           (f"{D}::test_two_grpo_processes_sample_their_shards_and_train_as_one_process",
            f"{D}::test_two_ppo_processes_with_adaptive_kl_train_as_one_process")),
    Mutant("online-round-metrics-of-one-process", "methods/online.py", "metrics = mean_over_processes(local)",
           "metrics = dict(local)",
           (f"{D}::test_two_grpo_processes_sample_their_shards_and_train_as_one_process",)),
    # FSDP on 2 CPU processes (torch fully_shard, applied by the engine)
    Mutant("fsdp-cpu-saves-rank0-shard-not-gathered", "engine/fsdp_cpu.py",
           "state = get_model_state_dict(unit, options=StateDictOptions(full_state_dict=True, "
           "cpu_offload=not everywhere))",
           "state = {k: v.to_local() for k, v in unit.state_dict().items()}",
           (f"{D}::test_fsdp_on_two_cpu_processes_shards_the_model_and_trains_as_one_process",)),
    Mutant("fsdp-cpu-gradients-never-reduced", "engine/loop.py",
           "unit = shard_model(model, objective.step)",
           "unit = shard_model(model, objective.step); unit.set_requires_gradient_sync(False)",
           (f"{D}::test_fsdp_on_two_cpu_processes_shards_the_model_and_trains_as_one_process",)),
    # every step runs as the forward of the (DDP-wrapped) step unit
    Mutant("ddp-step-past-the-wrapper", "engine/loop.py", "loss, metrics = self.model(batch)",
           "loss, metrics = self.unit(batch)",
           (f"{D}::test_two_reward_model_processes_train_as_one_process",
            f"{D}::test_two_ppo_processes_with_adaptive_kl_train_as_one_process")),
    Mutant("fsdp-resume-weights-not-restored", "engine/sharded_state.py",
           "model_state_dict={MODEL_PREFIX + k: v for k, v in weights.items()},", "model_state_dict={},",
           (f"{D}::test_fsdp_run_killed_mid_way_resumes_to_the_weights_of_an_uninterrupted_run",)),
    Mutant("fsdp-resume-adam-moments-not-restored", "engine/sharded_state.py",
           "optim_state_dict=optimizer_state,",
           'optim_state_dict={"state": {}, "param_groups": optimizer_state["param_groups"]},',
           (f"{D}::test_fsdp_run_killed_mid_way_resumes_to_the_weights_of_an_uninterrupted_run",)),
    Mutant("fsdp-rollout-copy-never-refreshed", "engine/loop.py",
           "load_full_weights(self.unit, self._rollout_copy)", "None",
           (f"{D}::test_grpo_under_fsdp_samples_from_an_unsharded_copy_and_trains_as_one_process",)),
    Mutant("kto-kl-estimate-of-one-process", "methods/kto.py",
           "kl_mean = partial(global_mean, counted=float(batch[\"weight\"]) > 0)", "kl_mean = torch.mean",
           (f"{D}::test_two_kto_processes_take_the_kl_estimate_over_the_global_batch_and_train_as_one",)),
    Mutant("orpo-nll-token-mean-of-one-process", "methods/dpo.py",
           "tokens_per_pair = global_mean(chosen_len.float(), counted=float(batch[\"weight\"]) > 0)",
           "tokens_per_pair = chosen_len.float().mean()",
           (f"{D}::test_every_other_method_trains_on_two_processes_as_on_one[orpo-ddp]", "-m", "slow")),
    # Ray rollout and reward workers (a one-machine Ray on the loopback interface)
    Mutant("ray-rollout-weights-not-pushed", "rollout/ray_workers.py", "self.policy.load_state_dict(weights)",
           "None", ("tests/integration/test_ray_workers.py",)),
    Mutant("ray-reward-parts-out-of-order", "rollout/ray_workers.py", "total = [t for r in results for t in r.total]",
           "total = [t for r in results[::-1] for t in r.total]", ("tests/integration/test_ray_workers.py",)),
    Mutant("runlock-takeover-unguarded", "engine/rundir.py", "fcntl.flock(fd, fcntl.LOCK_EX)", "pass",
           (f"{E}/test_rundir.py::test_taking_over_a_stale_lock_waits_for_a_takeover_in_progress_and_never_removes_"
            "its_lock",)),
    Mutant("fsdp-cpu-layers-not-sharded", "engine/fsdp_cpu.py", "for layer in layers_to_shard(model):",
           "for layer in []:",
           (f"{D}::test_fsdp_on_two_cpu_processes_shards_the_model_and_trains_as_one_process",)),
    Mutant("engine-weight-decay-ignored", "engine/loop.py", "weight_decay=config.weight_decay,", "weight_decay=0.0,",
           (f"{E}/test_engine_wiring.py::test_first_adamw_step_applies_lr_and_weight_decay",)),
    # -- GRPO, RLOO, RAFT -----------------------------------------------------------------------------------------
    Mutant("grpo-clip-higher-ignored", "methods/grpo.py", "clip_eps_high=c.clip_eps_high or None, beta=c.beta,",
           "clip_eps_high=None, beta=c.beta,", (f"{M}/test_wiring_online.py", "-k", "grpo_step")),
    Mutant("grpo-loss-aggregation-ignored", "methods/grpo.py", "aggregation=c.loss_aggregation)",
           'aggregation="sequence")', (f"{M}/test_wiring_online.py", "-k", "grpo_step")),
    Mutant("grpo-logps-not-at-sampling-temperature", "methods/grpo.py",
           "logps, _ = response_logps(model, batch, temperature=self.temperature)\n        c = self.config",
           "logps, _ = response_logps(model, batch)\n        c = self.config",
           (f"{M}/test_wiring_online.py", "-k", "grpo_step")),
    Mutant("grpo-scale-rewards-ignored", "methods/grpo.py", "scale=self.config.scale_rewards", "scale=True",
           (f"{M}/test_online.py", "-k", "grpo_advantages")),
    Mutant("rloo-kl-not-in-the-reward", "methods/grpo.py", "rewards = scores - self.config.beta * kl",
           "rewards = scores", (f"{M}/test_online.py", "-k", "rloo_advantages")),
    Mutant("rloo-kl-estimator-ignored", "methods/grpo.py",
           "kl_penalty(e.sample_logps, e.ref_logps, self.config.kl_estimator)",
           'kl_penalty(e.sample_logps, e.ref_logps, "k1")', (f"{M}/test_online.py", "-k", "rloo_advantages")),
    Mutant("rloo-clip-range-ignored", "methods/grpo.py", "clip_eps=self.config.clip_eps,", "clip_eps=0.2,",
           (f"{M}/test_wiring_online.py", "-k", "rloo")),
    Mutant("online-frozen-old-logps-ignored", "methods/online.py",
           'return batch["old_logps"] if "old_logps" in batch else logps.detach()', "return logps.detach()",
           (f"{M}/test_wiring_online.py", "-k", "grpo_step")),
    Mutant("raft-sft-at-sampling-temperature", "methods/raft.py",
           "logps, _ = response_logps(model, batch)  # plain SFT: temperature 1",
           "logps, _ = response_logps(model, batch, temperature=self.temperature)",
           (f"{M}/test_wiring_online.py", "-k", "raft_step")),
    Mutant("raft-keeps-the-worst", "methods/raft.py", "key=lambda e: -e.score", "key=lambda e: e.score",
           (f"{M}/test_online.py", "-k", "raft_select")),
    # -- PPO ------------------------------------------------------------------------------------------------------
    Mutant("ppo-kl-not-in-the-reward", "methods/ppo.py", "reward = -coef * kl", "reward = torch.zeros_like(kl)",
           (f"{M}/test_online.py", "-k", "ppo_advantages")),
    Mutant("ppo-advantages-not-whitened", "methods/ppo.py", "advantages = whiten(advantages, mask)",
           "advantages = advantages", (f"{M}/test_online.py", "-k", "ppo_advantages")),
    Mutant("ppo-advantages-sign-flipped", "methods/ppo.py",
           "item.advantages, item.returns = advantages[i, :item.length]",
           "item.advantages, item.returns = -advantages[i, :item.length]",
           (f"{M}/test_online.py", "-k", "ppo_advantages")),
    Mutant("ppo-whiten-rewards-ignored", "methods/ppo.py", "if c.whiten_rewards:", "if False:",
           (f"{M}/test_online.py", "-k", "whiten_rewards")),
    Mutant("ppo-reward-clip-ignored", "methods/ppo.py",
           "score = max(-c.reward_clip, min(c.reward_clip, item.score)) if c.reward_clip > 0 else item.score",
           "score = item.score", (f"{M}/test_online.py", "-k", "ppo_advantages")),
    Mutant("ppo-gae-lambda-ignored", "methods/ppo.py", "gamma=c.gamma, lam=c.lam)", "gamma=c.gamma, lam=0.95)",
           (f"{M}/test_online.py", "-k", "ppo_advantages")),
    Mutant("ppo-kl-estimator-ignored", "methods/ppo.py", "kl_penalty(policy_logps, item.ref_logps, c.kl_estimator)",
           'kl_penalty(policy_logps, item.ref_logps, "k1")', (f"{M}/test_online.py", "-k", "whiten_rewards")),
    Mutant("ppo-clip-range-ignored", "methods/ppo.py", "clip_eps=c.clip_eps)", "clip_eps=0.2)",
           (f"{M}/test_wiring_ppo.py", "-k", "shared")),
    Mutant("ppo-logps-not-at-sampling-temperature", "methods/ppo.py",
           "logps, selected = response_logps(model.policy, batch, temperature=self.temperature, return_hidden=shared)",
           "logps, selected = response_logps(model.policy, batch, return_hidden=shared)",
           (f"{M}/test_wiring_ppo.py", "-k", "shared")),
    Mutant("ppo-value-clip-ignored", "methods/ppo.py", "clip_range=c.vf_clip)", "clip_range=0.2)",
           (f"{M}/test_wiring_ppo.py", "-k", "shared")),
    Mutant("ppo-critic-adapter-not-switched", "models/value.py",
           "with use_adapter(self.policy, self.critic_adapter):",
           "with use_adapter(self.policy, self.policy.active_adapter):",
           (f"{M}/test_wiring_ppo.py", "-k", "adapter")),
    Mutant("value-head-reads-the-next-state", "models/value.py", "use_cache=False).last_hidden_state[:, :-1]",
           "use_cache=False).last_hidden_state[:, 1:]", (f"{M}/test_wiring_ppo.py", "-k", "separate")),
    Mutant("critic-adapter-accepted-without-lora", "models/value.py", 'if critic == "adapter" and not config.lora:',
           "if False:", (f"{M}/test_wiring_ppo.py", "-k", "needs_lora")),
    Mutant("value-model-head-not-rescaled", "models/value.py", "if normalize_reward and stats:", "if False:",
           ("tests/integration/test_online_cli.py::test_ppo_with_a_reward_model_as_reward_and_value_model",),
           "the critic from `bridle rm` predicts raw scores, its targets are normalized ones"),
    Mutant("raft-buffer-counts-every-sample", "methods/raft.py",
           "return self.config.prompts_per_rollout * self.config.keep",
           "return self.config.prompts_per_rollout * self.config.num_samples",
           (f"{M}/test_online.py", "-k", "valid_configs")),
    # -- objectives and ops ---------------------------------------------------------------------------------------
    Mutant("objective-dpo-label-smoothing-sign", "objectives/preference.py",
           "- label_smoothing * F.logsigmoid(-beta * h)", "+ label_smoothing * F.logsigmoid(-beta * h)",
           (f"{O}/test_preference_losses.py",)),
    Mutant("objective-kto-z0-not-clamped", "objectives/kto.py", ".clamp(min=0).detach()", ".detach()",
           (f"{O}/test_kto.py",)),
    Mutant("objective-ppo-ratio-not-clipped", "objectives/ppo.py",
           "clipped = torch.clamp(ratio, 1 - clip_eps, 1 + eps_high) * advantages", "clipped = ratio * advantages",
           (f"{O}/test_ppo.py",)),
    Mutant("objective-ppo-value-not-clipped", "objectives/ppo.py", "0.5 * torch.max(error, clipped_error)",
           "0.5 * error", (f"{O}/test_ppo.py",)),
    Mutant("objective-grpo-kl-sign", "objectives/ppo.py", "per_token = per_token + beta * kl",
           "per_token = per_token - beta * kl", (f"{O}/test_ppo.py",)),
    Mutant("ops-gae-gamma-ignored", "ops/rl.py", "delta = rewards[:, t] + gamma * next_value - values[:, t]",
           "delta = rewards[:, t] + next_value - values[:, t]", (f"{OPS}/test_rl.py", "-k", "gae")),
    Mutant("ops-gae-lambda-ignored", "ops/rl.py", "running = delta + gamma * lam * running",
           "running = delta + gamma * running", (f"{OPS}/test_rl.py", "-k", "gae")),
    Mutant("ops-whiten-biased-variance", "ops/rl.py", "zero).sum() / (n - 1)", "zero).sum() / n",
           (f"{OPS}/test_rl.py", "-k", "whiten")),
    Mutant("ops-leave-one-out-is-the-group-mean", "ops/rl.py",
           "others = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)",
           "others = groups.mean(dim=1, keepdim=True)", (f"{OPS}/test_rl.py", "-k", "leave_one_out")),
    Mutant("ops-k3-sign", "ops/rl.py", "torch.expm1(-log_ratio) + log_ratio", "torch.expm1(-log_ratio) - log_ratio",
           (f"{OPS}/test_rl.py", "-k", "kl")),
    Mutant("ops-logps-temperature-ignored", "ops/logprobs.py", "if temperature != 1.0:\n        logits = logits",
           "if False:\n        logits = logits", (f"{M}/test_wiring_online.py", "-k", "grpo_step")),
    Mutant("ops-masked-mean-over-all-entries", "ops/masked.py",
           "return (values * mask).sum() / mask.sum().clamp(min=1)", "return (values * mask).mean()",
           (f"{O}/test_ppo.py",)),
    # -- prefix-shared batches (issue 17): the same numbers as one row per sequence --------------------------------
    Mutant("shared-prefix-token-read-at-its-row-neighbour", "data/shared_prefix.py", "sources.append(flat[t - 1])",
           "sources.append(flat[t] - 1)", ("tests/unit/data/test_shared_prefix.py",
                                           f"{OPS}/test_shared_prefix_logps.py", "-k", "pair_layout or llama")),
    Mutant("shared-prefix-positions-run-on-along-the-row", "data/shared_prefix.py",
           "positions.extend(range(p, p + len(suffix)))",
           "positions.extend(range(len(positions), len(positions) + len(suffix)))",
           (f"{OPS}/test_shared_prefix_logps.py", "-k", "equal_plain_ones and gpt2")),
    Mutant("shared-prefix-responses-see-each-other", "ops/shared_prefix.py",
           "visible = same_block & not_after & ((owner_k == 0) | (owner_k == owner_q))",
           "visible = same_block & not_after", (f"{OPS}/test_shared_prefix_logps.py", "-k", "equal_plain_ones")),
    Mutant("shared-prefix-pairs-not-reordered", "methods/sharing.py", "return values.view(-1, 2).t().reshape(-1)",
           "return values", (f"{M}/test_prefix_sharing_dpo.py", "-k", "loss_and_gradient and llama")),
    Mutant("shared-prefix-experience-not-in-item-order", "methods/experience.py",
           "batch[name] = batch[name][order]", "batch[name] = batch[name]",
           (f"{M}/test_prefix_sharing_online.py", "-k", "group_step and qwen2")),
    # -- the fast sampler (issue 17): each prompt prefilled once, rows leave when they end -------------------------
    Mutant("fast-sampler-samples-on-another-prompts-cache", "rollout/decode.py",
           "source = torch.arange(len(repeats), device=device).repeat_interleave(repeats.to(device))",
           "source = torch.arange(len(repeats), device=device).repeat(int(repeats.max()))[:int(repeats.sum())]",
           (f"{R}/test_decode.py", "-k", "equal_hf_generate and llama"),
           "the prefilled cache tiled instead of expanded per sample"),
    Mutant("fast-sampler-logps-after-truncation", "rollout/choice.py",
           "return Choice(tokens, scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse, entropy)",
           "return Choice(tokens, scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - (torch.logsumexp("
           "truncate_logits(scaled, top_k, top_p), -1) if temperature > 0 else lse), entropy)",
           (f"{R}/test_rollout.py", "-k", "forward_pass and fast"), "log π of the truncated distribution"),
    Mutant("fast-sampler-keeps-finished-rows", "rollout/decode.py",
           "if stale and stale >= max(1, int(len(active) * COMPACT_SHARE)):", "if False:",
           (f"{R}/test_decode.py", "-k", "finished_rows_leave")),
    Mutant("fast-sampler-runs-to-the-token-limit", "rollout/decode.py",
           "if step + 1 == max_new_tokens or bool(finished.all()):", "if step + 1 == max_new_tokens:",
           (f"{R}/test_decode.py", "-k", "finished_rows_leave or says_eos_first")),
    Mutant("fast-sampler-draw-forgets-the-blocks-before", "rollout/choice.py",
           "inner = inside.to(torch.float64).cumsum(-1) + before.unsqueeze(-1)",
           "inner = inside.to(torch.float64).cumsum(-1)", (f"{R}/test_choice.py",)),
]


def check(mutants: list[Mutant]) -> list[str]:
    """Problems with the list: a snippet missing or not unique, a name used twice."""
    problems = []
    names = [m.name for m in mutants]
    problems += [f"{n}: name used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    for m in mutants:
        path = PACKAGE / m.file
        if not path.is_file():
            problems.append(f"{m.name}: src/bridle/{m.file} does not exist")
            continue
        count = path.read_text().count(m.original)
        if count != 1:
            problems.append(f"{m.name}: snippet found {count} times in src/bridle/{m.file} (must be exactly once):\n"
                            f"    {m.original!r}")
    return problems


def make_worker(root: Path) -> Path:
    """A copy of src/, tests/, configs/ (the shipped accelerate configs tests launch with) and pyproject.toml
    (pytest's settings) under `root`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "src", root / "src", ignore=ignore)
    shutil.copytree(REPO / "tests", root / "tests", ignore=ignore)
    shutil.copytree(REPO / "configs", root / "configs", ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def environment(root: Path, cache: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["BRIDLE_CACHE"] = str(cache)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    return env


def run_pytest(root: Path, args: tuple[str, ...], env: dict[str, str], timeout: float) -> tuple[str, float, str]:
    """One pytest process: ("passed" | "failed" | "timeout" | "error ...", seconds, the output's tail)."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", *PYTEST_FLAGS, *args]
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - started, ""
    return outcome_of(done.returncode), time.perf_counter() - started, (done.stdout + done.stderr)[-3000:]


PYTEST_FLAGS = ("-x", "-q", "-p", "no:cacheprovider")


def outcome_of(code: int) -> str:
    if code == 0:
        return "passed"
    if code == 1:
        return "failed"
    if code == 124:
        return "timeout"
    return f"error (pytest exit {code})"  # interrupted, internal or usage error, no tests collected


# A server per worker imports the heavy third-party packages once (about 6 s of every pytest run), then forks a
# child per mutant that imports the (mutated) bridle afresh and runs pytest. It never imports bridle itself.
SERVER = r"""
import json, os, signal, sys
import torch, transformers, accelerate, peft, safetensors, rich, yaml, pytest  # noqa: F401
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(log, 1)
        os.dup2(log, 2)
        signal.signal(signal.SIGALRM, lambda *_: os._exit(124))
        signal.alarm(int(job["timeout"]))
        os.environ["BRIDLE_CACHE"] = job["cache"]
        code = pytest.main(job["args"])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    print(json.dumps({"code": code}), flush=True)
"""


class Server:
    """pytest runs in forks of one warm process (POSIX); `run` has `run_pytest`'s answer."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.process = subprocess.Popen([sys.executable, "-c", SERVER], cwd=root, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the pytest server did not start")

    def run(self, args: tuple[str, ...], cache: Path, timeout: float) -> tuple[str, float, str]:
        started = time.perf_counter()
        log = self.root / "pytest.log"
        job = {"args": [*PYTEST_FLAGS, *args], "cache": str(cache), "timeout": timeout, "log": str(log)}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        code = json.loads(self.process.stdout.readline())["code"]
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        return outcome_of(code), time.perf_counter() - started, tail

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", action="append", default=[], help="run mutants whose name contains this (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per mutant before it counts as killed")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true", help="only check that every snippet is in the code")
    parser.add_argument("--no-baseline", action="store_true", help="skip running the tests on the unmodified code")
    parser.add_argument("--verbose", action="store_true", help="print the test output of survivors and errors")
    parser.add_argument("--no-fork", action="store_true", help="a fresh pytest process per mutant (slower; the "
                        "default forks a warm process where os.fork exists)")
    opts = parser.parse_args()

    mutants = [m for m in MUTANTS if not opts.k or any(k in m.name for k in opts.k)]
    if opts.list:
        for m in mutants:
            print(f"{m.name:48s} src/bridle/{m.file}: {m.original.splitlines()[0]!r} -> "
                  f"{m.replacement.splitlines()[0]!r}" + (f"  ({m.why})" if m.why else ""))
        return 0
    problems = check(mutants)
    if problems:
        print("the mutant list no longer matches the code:\n" + "\n".join(problems), file=sys.stderr)
        return 2
    if opts.check:
        print(f"all {len(mutants)} snippets found exactly once")
        return 0

    started = time.perf_counter()
    jobs = max(1, min(opts.jobs, len(mutants)))
    threads = max(1, (os.cpu_count() or 2) // jobs)
    with tempfile.TemporaryDirectory(prefix="bridle-mutants-") as tmp:
        workers = [make_worker(Path(tmp) / f"worker{i}") for i in range(jobs)]
        probe = subprocess.run([sys.executable, "-c", "import bridle; print(bridle.__file__)"], capture_output=True,
                               text=True, env=environment(workers[0], Path(tmp) / "cache-probe", threads))
        if not probe.stdout.strip().startswith(str(workers[0])):
            print(f"the copy is not what Python imports (got {probe.stdout.strip() or probe.stderr[-500:]})",
                  file=sys.stderr)
            return 2
        if not opts.no_baseline:
            union = tuple(dict.fromkeys(arg for m in mutants for arg in _without_k(m.tests)))
            outcome, seconds, tail = run_pytest(workers[0], union, environment(workers[0], Path(tmp) / "cache-base",
                                                                                 os.cpu_count() or 2),
                                                timeout=opts.timeout * 4)
            print(f"baseline: the mutants' tests on the unmodified code {outcome} ({seconds:.0f} s)", flush=True)
            if outcome != "passed":
                print(tail, file=sys.stderr)
                return 2

        todo: queue.Queue[Mutant] = queue.Queue()
        for m in mutants:
            todo.put(m)
        results: dict[str, tuple[str, float, str]] = {}
        lock = threading.Lock()

        fork = hasattr(os, "fork") and not opts.no_fork

        def work(root: Path) -> None:
            server = Server(root, environment(root, root / "cache", threads)) if fork else None
            try:
                while True:
                    try:
                        m = todo.get_nowait()
                    except queue.Empty:
                        return
                    path = root / "src" / "bridle" / m.file
                    original = path.read_text()
                    path.write_text(original.replace(m.original, m.replacement, 1))
                    cache = root / f"cache-{m.name}"
                    try:
                        if server is not None:
                            outcome, seconds, tail = server.run(m.tests, cache, opts.timeout)
                        else:
                            outcome, seconds, tail = run_pytest(root, m.tests, environment(root, cache, threads),
                                                                opts.timeout)
                    finally:
                        path.write_text(original)
                    verdict = {"failed": "KILLED", "timeout": "KILLED (timeout)", "passed": "SURVIVED"}.get(
                        outcome, "ERROR")
                    with lock:
                        results[m.name] = (verdict, seconds, tail)
                        print(f"{verdict:16s} {m.name} ({seconds:.0f} s)", flush=True)
                        if opts.verbose and verdict in ("SURVIVED", "ERROR"):
                            print(tail)
            finally:
                if server is not None:
                    server.close()

        pool = [threading.Thread(target=work, args=(root,)) for root in workers]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    killed = [n for n, (v, _, _) in results.items() if v.startswith("KILLED")]
    survivors = [m.name for m in mutants if results[m.name][0] == "SURVIVED"]
    errors = [m.name for m in mutants if results[m.name][0] == "ERROR"]
    summary = {"mutants": len(mutants), "killed": len(killed), "score": round(len(killed) / len(mutants), 4),
               "survivors": survivors, "errors": errors, "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary))
    return 0 if not survivors and not errors else 1


def _without_k(args: tuple[str, ...]) -> list[str]:
    """Test paths of a mutant without its -k filter (the baseline runs them whole)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "-k":
            skip = True
        else:
            out.append(arg)
    return out


if __name__ == "__main__":
    sys.exit(main())
