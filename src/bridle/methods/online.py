"""Online methods (PPO, GRPO, RLOO, RAFT): rollout → feedback → advantages in front of the one engine.

A run is a series of rounds. Each round samples `num_samples` responses for `prompts_per_rollout` prompts from the
current policy, scores them with the reward sources, and turns them into `Experience` (old / reference log-probs,
advantages); then `update_epochs` passes over that experience in mini-batches of `batch_size × grad_accum`
responses take one optimizer step each, and the next round samples again. `OnlineMethod.train` is that loop, in one
place; the engine does each optimizer step and its bookkeeping. Subclasses say how scores become advantages
(`advantages`) and which loss a mini-batch gets (`step`).
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bridle.config import TrainConfig, option
from bridle.data.prompts import PromptRow, load_prompt_dataset
from bridle.engine import Engine, StepOutput
from bridle.engine.distributed import gather_lists, mean_over_processes, process_rank, world_size
from bridle.engine.logging import console
from bridle.errors import ConfigError
from bridle.eval.monitors import HackingMonitor
from bridle.feedback import CombinedReward, Sample, build_reward
from bridle.methods.base import Method
from bridle.methods.experience import Experience, collate_experience, per_token_pass, response_logps
from bridle.methods.splits import split_eval
from bridle.models import load_causal_lm, unwrap
from bridle.models.lora import is_peft
from bridle.rollout import Rollout, SamplingSettings, as_messages, sample
from bridle.rollout.ray_workers import RewardPool, RolloutPool, check_ray, connect
from bridle.rollout.vllm_backend import BACKENDS, VLLMSampler, check_backend


@dataclass
class OnlineConfig(TrainConfig):
    """Keys shared by every online method (the engine's keys, plus rollout and reward)."""

    lr: float = option(1e-6, "peak learning rate (AdamW); online RL wants small ones for full fine-tuning")
    lr_schedule: str = option("constant", "learning-rate schedule after warmup", ("cosine", "linear", "constant"))
    log_every: int = option(1, "log metrics every N optimizer steps")
    reward: str = option("", "reward sources, comma-separated, each optionally weighted `w*entry`: a `bridle rm` "
                             "output dir, `module:function` / `file.py:function`, a built-in verifier "
                             "(math_exact_match, format_answer_line, length_limit), or an LLM judge "
                             "(judge:grade, judge:reference[=COLUMN], optionally :local[:MODEL] or :endpoint[:MODEL])")
    normalize_reward: bool = option(True, "normalize reward-model scores with the statistics `bridle rm` saved")
    missing_eos_penalty: float = option(0.0, "subtracted from the reward of responses that never reach EOS / stop")
    prompts_per_rollout: int = option(8, "prompts sampled per round")
    num_samples: int = option(1, "responses sampled per prompt (GRPO / RLOO group size G)")
    update_epochs: int = option(1, "passes over each round's responses (PPO epochs)")
    max_new_tokens: int = option(128, "most tokens sampled per response")
    max_prompt_length: int = option(256, "prompt tokens kept (from the end)")
    temperature: float = option(1.0, "sampling temperature (log-probs are taken at this temperature too)")
    top_p: float = option(1.0, "nucleus sampling: keep the smallest set of tokens with this much probability")
    top_k: int = option(0, "sample from the k most likely tokens; 0 = all")
    stop: str = option("", "stop strings, separated by `|` (a response also stops at EOS)")
    generation_batch_size: int = option(32, "rows per generate call")
    sampler: str = option("fast", "how the policy is sampled: fast (Bridle's decode loop: each prompt prefilled once "
                                  "for its samples, finished rows dropped) or hf (HF generate, as before issue 17: "
                                  "a seed gives the samples it gave then)", ("fast", "hf"))
    beta: float = option(0.04, "KL coefficient β (to the frozen reference); 0 = no reference model at all")
    kl_estimator: str = option("k1", "per-token KL estimator for penalties in the reward", ("k1", "k2", "k3"))
    clip_eps: float = option(0.2, "PPO ratio clip range ε")
    reference_model: str = option("", "reference model; empty = the policy's starting weights (LoRA: adapter off)")
    eval_prompts: int = option(64, "held-out prompts answered (greedy) at each evaluation; 0 = all")
    eval_max_new_tokens: int = option(0, "most tokens per evaluation answer; 0 = --max-new-tokens")
    judge_every: int = option(0, "every N rounds, judge greedy held-out answers against the initial policy's "
                                 "(reward-hacking monitor); 0 = off")
    judge: str = option("", "the judge of --judge-every, as `bridle eval --judge`: local[:MODEL], "
                            "endpoint[:MODEL], rm:DIR or rule:NAME")
    length_drift_bound: float = option(2.0, "warn when the mean response length exceeds this multiple of the "
                                            "first round's")
    rollout_backend: str = option("hf", "what samples the rounds: hf (transformers, CPU or GPU) or vllm (GPU, "
                                        "colocated; untested in Bridle's suite, see docs/scaling.md)", BACKENDS)
    vllm_gpu_memory_utilization: float = option(0.3, "with --rollout-backend vllm: share of the GPU's memory vLLM "
                                                     "may take (the rest is training's)")
    vllm_sleep: bool = option(True, "with --rollout-backend vllm: free vLLM's memory while the policy trains "
                                    "(vLLM sleep mode)")
    rollout_shards: int = option(0, "a round's prompts are sampled in this many seeded shards (whole groups); each "
                                    "process samples its own; 0 = one per process. A 1-process run with "
                                    "--rollout-shards N samples exactly what N processes do")
    ray_address: str = option("", "Ray cluster for --rollout-workers / --reward-workers: local (one on this "
                                  "machine, loopback only), auto or HOST:PORT (one started with `ray start`)")
    rollout_workers: int = option(0, "Ray actors that sample each process's prompt shards, each with a copy of the "
                                     "policy given its weights every round; 0 = sample in the training process")
    reward_workers: int = option(0, "Ray actors that score the responses, each holding the --reward sources; "
                                    "0 = score in the training process")


class OnlineMethod(Method):
    """Rounds of sampling and updates; subclasses give `advantages` and `step`."""

    Config: ClassVar[type[TrainConfig]] = OnlineConfig
    aggregation: ClassVar[str] = "token"  # what the loss averages over: "token" → weight by tokens, else rows
    uses_ratio: ClassVar[bool] = True  # the loss reads π_old (a PPO ratio); RAFT's SFT loss does not
    share_prefix: ClassVar[bool] = False  # batches hold each prompt once (GRPO / RLOO: PrefixSharingMixin's key)
    config: OnlineConfig

    def __init__(self, config: TrainConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        self.monitor = HackingMonitor(length_bound=self.config.length_drift_bound)
        self.initial_answers: list[str] | None = None  # the starting policy's greedy held-out answers
        self.judge: Any = None  # the --judge of --judge-every, built in before_training
        self.vllm: VLLMSampler | None = None  # --rollout-backend vllm: the colocated engine, built in before_training
        self.rollout_pool: RolloutPool | None = None  # --rollout-workers: Ray actors, built in before_training

    # -- data ---------------------------------------------------------------------------------------------------
    def build_datasets(self) -> tuple[list[PromptRow], list[PromptRow], str]:
        self.check_config()
        self.reward = self._build_reward()  # now, so a bad --reward fails before any model loads
        rows, report = load_prompt_dataset(self.config.data, on_bad_row=self.config.on_bad_row)
        lines = [f"train {report}"]
        if self.config.eval_data:
            eval_rows, eval_report = load_prompt_dataset(self.config.eval_data, on_bad_row=self.config.on_bad_row)
            lines.append(f"eval {eval_report}")
        else:
            rows, eval_rows = split_eval(rows, self.config.eval_fraction, seed=self.config.seed)
            if eval_rows:
                lines.append(f"held out {len(eval_rows)} prompts for evaluation")
        if self.config.eval_prompts > 0:
            eval_rows = eval_rows[:self.config.eval_prompts]
        return rows, eval_rows, "\n".join(lines)

    def check_config(self) -> None:
        c = self.config
        if not c.reward:
            raise ConfigError(f"bridle {self.name} needs --reward: a `bridle rm` output dir, module:function, "
                              "or a built-in verifier such as math_exact_match.")
        for key in ("prompts_per_rollout", "num_samples", "update_epochs", "max_new_tokens", "batch_size"):
            if getattr(c, key) < 1:
                raise ConfigError(f"key {key!r} must be >= 1; got {getattr(c, key)}.")
        check_backend(c.rollout_backend, lora=c.lora)
        check_ray(c.ray_address, c.rollout_workers, c.reward_workers)
        if c.rollout_workers and c.rollout_backend != "hf":
            raise ConfigError("--rollout-workers sample with the HF sampler in Ray actors; --rollout-backend "
                              f"{c.rollout_backend} samples in the training process: pass one of them.")
        if c.judge_every < 0:
            raise ConfigError(f"key 'judge_every' must be >= 0; got {c.judge_every}.")
        if c.judge_every and not c.judge:
            raise ConfigError("--judge-every needs --judge: local[:MODEL], endpoint[:MODEL], rm:DIR or rule:NAME "
                              "(as for `bridle eval --judge`).")
        shards, processes = self.shard_count(), world_size()
        if c.rollout_shards < 0 or shards % processes or c.prompts_per_rollout % shards:
            raise ConfigError(f"--rollout-shards {shards} must be a multiple of the {processes} processes and divide "
                              f"--prompts-per-rollout {c.prompts_per_rollout} (each shard holds whole prompts).")
        per_step = self.per_step
        if self.buffer_size() % per_step:
            across = f" per process, × {processes} processes = {per_step}" if processes > 1 else ""
            raise ConfigError(f"each round yields {self.buffer_size()} responses to train on, which does not split "
                              f"into optimizer steps of batch_size × grad_accum = {c.batch_size * c.grad_accum}"
                              f"{across}. Change --prompts-per-rollout, --num-samples, --batch-size or --grad-accum.")
        if c.save_every and c.save_every % self.updates_per_round:
            raise ConfigError(f"--save-every {c.save_every} would checkpoint in the middle of a round of "
                              f"{self.updates_per_round} updates, whose sampled responses are not saved; use a "
                              f"multiple of {self.updates_per_round} so a resumed run continues exactly.")

    def _build_reward(self) -> CombinedReward:
        """The reward sources of --reward (reward models load on first use)."""
        return build_reward(self.config.reward, missing_eos_penalty=self.config.missing_eos_penalty,
                            normalize=self.config.normalize_reward)

    def buffer_size(self) -> int:
        """Responses trained on per round."""
        return self.config.prompts_per_rollout * self.config.num_samples

    @property
    def per_step(self) -> int:
        """Responses per optimizer step over all processes (each process takes batch_size × grad_accum of them)."""
        return self.config.batch_size * self.config.grad_accum * world_size()

    @property
    def updates_per_round(self) -> int:
        return self.config.update_epochs * self.buffer_size() // self.per_step

    def shard_count(self) -> int:
        """Shards a round's prompts are sampled in (--rollout-shards; 0 = one per process)."""
        return self.config.rollout_shards or world_size()

    def planned_steps(self) -> int:
        rounds = math.ceil(self.config.epochs * len(self.prompts) / self.config.prompts_per_rollout)
        return max(1, rounds) * self.updates_per_round

    # -- the loop -----------------------------------------------------------------------------------------------
    def train(self, engine: Engine, start_step: int = 0) -> None:
        """The whole online algorithm, top to bottom. Each round samples responses from the policy as it is now,
        scores them and turns them into experience (π_old / π_ref log-probs, advantages); then `update_epochs`
        passes over that experience in shuffled mini-batches of batch_size × grad_accum responses, one optimizer
        step each (the engine's: accumulation, clipping, schedule; then logging, eval, checkpoints).

        Every seed follows from the round (sampling) and the (round, epoch) pair (shuffling), so a run resumed at a
        round boundary, where `--save-every` checkpoints, continues exactly as the uninterrupted run."""
        c = self.config
        if start_step % self.updates_per_round:
            raise ConfigError(f"cannot resume at step {start_step}: it is inside a round of {self.updates_per_round} "
                              "updates, whose sampled responses were not saved. Resume from a checkpoint at a "
                              "multiple of that (--save-every).")
        for round_index in range(start_step // self.updates_per_round, self.num_rounds(engine.total_steps)):
            model = engine.rollout_model()  # the policy as trained so far (under FSDP: an unsharded copy)
            experience, metrics = self.make_experience(model, round_index)
            metrics["epoch"] = (round_index + 1) * c.prompts_per_rollout / len(self.prompts)  # passes over prompts
            metrics.update(self.watch(model, round_index, metrics))
            for epoch in range(c.update_epochs):
                for minibatch in self.minibatches(experience, round_index, epoch):
                    if engine.finished:  # --max-steps may end the run inside a round
                        return
                    mine = minibatch[process_rank()::world_size()]  # this process's share of the global batch
                    micro_batches = [self.collate(mine[i:i + c.batch_size]) for i in range(0, len(mine), c.batch_size)]
                    step_metrics, tokens = engine.optimizer_step(micro_batches, metrics)
                    engine.after_step(step_metrics, tokens)

    def num_rounds(self, total_steps: int) -> int:
        """Rounds a run of `total_steps` optimizer steps samples (the last one may be cut short)."""
        return math.ceil(total_steps / self.updates_per_round)

    def minibatches(self, experience: Sequence[Experience], round_index: int, epoch: int) -> list[list[Experience]]:
        """One update epoch over a round's experience (every process holds all of it): a shuffle seeded by (round,
        epoch), cut into mini-batches of batch_size × grad_accum × processes responses, so the epoch covers every
        response exactly once; each process trains on every N-th response of a mini-batch."""
        per_step = self.per_step
        if len(experience) < per_step:
            raise RuntimeError(f"round {round_index} made {len(experience)} responses to train on, fewer than one "
                               f"optimizer step's batch_size × grad_accum × processes = {per_step}")
        order = torch.randperm(len(experience), generator=torch.Generator().manual_seed(
            self.config.seed + 1000 * round_index + epoch)).tolist()
        return [[experience[i] for i in order[start:start + per_step]]
                for start in range(0, len(order) - per_step + 1, per_step)]

    # -- models -------------------------------------------------------------------------------------------------
    def before_training(self, model: nn.Module, train_items: Sequence[Any], eval_items: Sequence[Any]) -> None:
        self.prompts, self.eval_rows = list(train_items), list(eval_items)
        if getattr(self, "reward", None) is None:  # callers that skip build_datasets (programmatic use, tests)
            self.reward = self._build_reward()
        self.reference = self._build_reference(self.policy_of(model))
        c = self.config
        if c.ray_address:
            connect(c.ray_address, c.rollout_workers + c.reward_workers)
        if c.reward_workers:  # the reward sources, each loaded once in every Ray worker
            self.reward = RewardPool(c.reward_workers, c.reward, missing_eos_penalty=c.missing_eos_penalty,
                                     normalize=c.normalize_reward)
        if c.rollout_workers:
            self.rollout_pool = RolloutPool(c.rollout_workers, self.policy_of(model), self.tokenizer)
        if c.rollout_backend == "vllm":
            self.vllm = VLLMSampler(c.model, gpu_memory_utilization=c.vllm_gpu_memory_utilization,
                                    dtype=c.model_dtype, max_model_len=c.max_prompt_length + c.max_new_tokens,
                                    seed=c.seed, sleep_mode=c.vllm_sleep)
        if self.config.judge_every:
            from bridle.feedback.judge_spec import build_judge

            self.judge = build_judge(self.config.judge, batch_size=self.config.generation_batch_size)

    def _build_reference(self, policy: nn.Module) -> nn.Module | None:
        """None when no KL term is used or when LoRA's adapter-disabled base serves as the reference."""
        if self.config.beta == 0:
            return None
        if self.config.reference_model:
            reference = load_causal_lm(self.config.reference_model, dtype=self.config.model_dtype,
                                       attn_implementation=self.config.attn_implementation)
        elif is_peft(policy):
            return None
        else:
            reference = copy.deepcopy(unwrap(policy))
        reference.requires_grad_(False)
        return reference.eval()

    def sampling(self, *, evaluation: bool = False) -> SamplingSettings:
        c = self.config
        stop = tuple(s for s in c.stop.split("|") if s) if c.stop else ()
        if evaluation:
            return SamplingSettings(max_new_tokens=c.eval_max_new_tokens or c.max_new_tokens, temperature=0.0,
                                    stop=stop, max_prompt_length=c.max_prompt_length,
                                    batch_size=c.generation_batch_size, sampler=c.sampler)
        return SamplingSettings(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p,
                                top_k=c.top_k, stop=stop, max_prompt_length=c.max_prompt_length,
                                batch_size=c.generation_batch_size, sampler=c.sampler)

    # -- rounds -------------------------------------------------------------------------------------------------
    def round_prompts(self, round_index: int) -> list[PromptRow]:
        """The prompts of a round: a seeded shuffle of the data per pass, taken in order (wrapping around)."""
        n, per = len(self.prompts), self.config.prompts_per_rollout
        rows = []
        for position in range(round_index * per, (round_index + 1) * per):
            epoch, index = divmod(position, n)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed * 7919 + epoch))
            rows.append(self.prompts[int(order[index])])
        return rows

    def make_experience(self, model: nn.Module, round_index: int) -> tuple[list[Experience], dict[str, float]]:
        """A round's experience. The round's prompts are cut into `shard_count()` shards of whole prompts (so whole
        GRPO / RLOO groups), each sampled with its own seed; this process samples and scores its shards and takes
        their π_old / reference log-probs, then the processes exchange their experience, so each holds the whole
        round and computes its advantages (and their whitening, the KL controller's KL) over all of it, as one
        process would."""
        policy = self.policy_of(model)
        rows = self.round_prompts(round_index)
        per_shard = len(rows) // self.shard_count()
        items: list[Experience] = []
        scores: list[float] = []
        shard_metrics = []
        if self.vllm is not None:  # the policy moved since the last round: vLLM samples from its weights now
            self.vllm.push_weights(policy)
        shards = [rows[shard * per_shard:(shard + 1) * per_shard] for shard in self.my_shards()]
        rollouts = self.sample_shards(policy, [[r.prompt for r in shard_rows] for shard_rows in shards],
                                      [self.rollout_seed(round_index, shard) for shard in self.my_shards()])
        for shard_rows, rollout in zip(shards, rollouts):
            shard_scores, metrics = self.score(rollout, shard_rows)
            shard_metrics.append({**metrics, **rollout.metrics()})
            scores.extend(float(s) for s in shard_scores)
            items.extend(self.select([
                Experience(prompt_ids=p, response_ids=r, score=float(s), sample_logps=lp)
                for p, r, s, lp in zip(rollout.prompt_ids, rollout.response_ids, shard_scores, rollout.token_logps)]))
        if self.vllm is not None:
            self.vllm.sleep()  # its memory back to training until the next round
        device = next(policy.parameters()).device
        if self.uses_ratio and self.updates_per_round > 1:  # the policy moves within the round: freeze π_old now
            self.freeze_old(model, items, device)
        if self.config.beta > 0:
            for item, logps in zip(items, self.token_pass(items, lambda b: self.reference_logps(policy, b), device)):
                item.ref_logps = logps
        items = gather_lists(items)  # the whole round, in shard order, on every process
        metrics = self.round_metrics(shard_metrics, gather_lists(scores))
        metrics.update(self.advantages(model, items))
        return items, metrics

    def sample_shards(self, policy: nn.Module, prompts: Sequence[Sequence[Any]], seeds: Sequence[int]
                      ) -> list[Rollout]:
        """This process's shards of a round, each with its seed: by the Ray rollout workers (concurrently, with
        the policy's current weights), else one after another here."""
        if self.rollout_pool is not None:
            return self.rollout_pool.sample_shards(policy, list(zip(prompts, seeds)), self.config.num_samples,
                                                   self.sampling())
        return [self.sample_prompts(policy, shard, seed) for shard, seed in zip(prompts, seeds)]

    def sample_prompts(self, policy: nn.Module, prompts: Sequence[Any], seed: int) -> Rollout:
        """`num_samples` responses per prompt from the policy: HF sampling, or the colocated vLLM engine."""
        if self.vllm is not None:
            return self.vllm.sample(self.tokenizer, prompts, n=self.config.num_samples, settings=self.sampling(),
                                    seed=seed)
        return sample(policy, self.tokenizer, prompts, n=self.config.num_samples, settings=self.sampling(), seed=seed)

    def my_shards(self) -> range:
        """The shards of each round this process samples (consecutive ones, so rank order is shard order)."""
        per_process = self.shard_count() // world_size()
        return range(process_rank() * per_process, (process_rank() + 1) * per_process)

    def rollout_seed(self, round_index: int, shard: int) -> int:
        """The sampling seed of a round's shard (shard 0's is the seed a 1-shard round has always had)."""
        return self.config.seed * 100_003 + round_index + 1_000_003 * shard

    @staticmethod
    def round_metrics(shard_metrics: Sequence[dict[str, float]], scores: Sequence[float]) -> dict[str, float]:
        """The round's reward and rollout metrics from its shards' (equal sizes: a mean of means is the mean;
        throughput adds up over processes; the reward's std from every score)."""
        local = {k: sum(m[k] for m in shard_metrics) / len(shard_metrics) for k in shard_metrics[0]}
        metrics = mean_over_processes(local)
        if "rollout/tokens_per_s" in metrics:
            metrics["rollout/tokens_per_s"] *= world_size()
        values = torch.tensor(scores, dtype=torch.float32)
        metrics["reward/std"] = float(values.std()) if len(values) > 1 else 0.0
        return metrics

    def score(self, rollout: Rollout, rows: Sequence[PromptRow]) -> tuple[Tensor, dict[str, float]]:
        samples = [Sample(prompt=as_messages(rows[i].prompt, self.tokenizer), completion=text, finished=done,
                          columns=dict(rows[i].columns))
                   for i, text, done in zip(rollout.prompt_index, rollout.texts, rollout.finished)]
        result = self.reward(samples)
        scores = torch.tensor(result.total, dtype=torch.float32)
        metrics = {"reward/mean": float(scores.mean()), "reward/std": float(scores.std()) if len(scores) > 1 else 0.0}
        for name, values in result.parts.items():
            metrics[f"reward/{name}"] = sum(values) / max(len(values), 1)
        return scores, metrics

    def select(self, items: list[Experience]) -> list[Experience]:
        """Which sampled responses to train on (all; RAFT keeps the best)."""
        return items

    # -- forward passes over a round ----------------------------------------------------------------------------
    def token_pass(self, items: Sequence[Experience], fn: Any, device: torch.device) -> list[Tensor]:
        """`fn(batch) -> (B, R)` over a round's items without grad, one (r,) tensor per item."""
        return per_token_pass(items, fn, pad_id=self.tokenizer.pad_token_id, batch_size=self.config.batch_size,
                              device=device, share_prefix=self.share_prefix)

    def freeze_old(self, model: nn.Module, items: Sequence[Experience], device: torch.device) -> None:
        """Set each item's π_old log-probs from one no-grad pass of the current policy."""
        policy = self.policy_of(model)
        for item, logps in zip(items, self.token_pass(items, lambda b: self.logps(policy, b), device)):
            item.old_logps = logps

    def logps(self, policy: nn.Module, batch: dict[str, Any]) -> Tensor:
        was_training = policy.training
        policy.eval()
        out = response_logps(policy, batch, temperature=self.temperature)[0]
        policy.train(was_training)
        return out

    def reference_logps(self, policy: nn.Module, batch: dict[str, Any]) -> Tensor:
        if self.reference is not None:
            return self.logps(self.reference, batch)
        with policy.disable_adapter():  # LoRA: the base without the adapter is the starting policy
            return self.logps(policy, batch)

    @property
    def temperature(self) -> float:
        return self.config.temperature if self.config.temperature > 0 else 1.0

    # -- the update ---------------------------------------------------------------------------------------------
    @abstractmethod
    def advantages(self, model: nn.Module, items: list[Experience]) -> dict[str, float]:
        """Set each item's advantages (and returns / values); return metrics of the round."""

    def collate(self, items: Sequence[Experience]) -> dict[str, Any]:
        weight = "tokens" if self.aggregation == "token" else "sequences"
        return collate_experience(items, pad_id=self.tokenizer.pad_token_id, weight=weight,
                                  share_prefix=self.share_prefix)

    def old_logps(self, batch: dict[str, Any], logps: Tensor) -> Tensor:
        """π_old: frozen at sampling time when the round has several updates; else this update's own log-probs
        (the ratio is exactly 1 and only its gradient counts)."""
        return batch["old_logps"] if "old_logps" in batch else logps.detach()

    @abstractmethod
    def step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        ...

    # -- reward-hacking monitors --------------------------------------------------------------------------------
    def watch(self, model: nn.Module, round_index: int, metrics: dict[str, float]) -> dict[str, float]:
        """The monitors of a round (bridle.eval.monitors): response length against the first round's, and every
        --judge-every rounds the judge's win rate of the current greedy held-out answers against the initial
        policy's (stored at the first judged round). Warnings go to the console. Greedy decoding on a forked RNG:
        the training numbers are the same with the monitors on or off."""
        c = self.config
        if "rollout/response_length" not in metrics:  # a make_experience that reports no rollout: nothing to watch
            return {}
        win_rate = None
        if c.judge_every and self.eval_rows and round_index % c.judge_every == 0:
            answers = self.greedy_answers(model).texts
            if self.initial_answers is None:
                self.initial_answers = answers
            else:
                win_rate = self.judge_win_rate(answers, self.initial_answers)
        found, warnings = self.monitor.update(metrics["reward/mean"], metrics["rollout/response_length"], win_rate)
        for warning in warnings:
            console.print(f"warning: round {round_index}: possible reward hacking: {warning}", style="yellow")
        return {**found, "monitor/warnings": float(len(warnings))}

    def judge_win_rate(self, answers: Sequence[str], initial: Sequence[str]) -> float | None:
        """Win rate (ties half) of `answers` over `initial` on the held-out prompts; unparsed verdicts left out
        (None when the judge read none)."""
        from bridle.eval.evaluate import OUTCOME, judge_pair
        from bridle.eval.winrate import win_rate

        verdicts = judge_pair(self.judge, [r.prompt for r in self.eval_rows], answers, initial)
        outcomes = [OUTCOME[v.winner] for v in verdicts if v.winner is not None]
        return win_rate(outcomes, resamples=0).win_rate if outcomes else None

    # -- evaluation and state -----------------------------------------------------------------------------------
    def greedy_answers(self, model: nn.Module) -> Rollout:
        """Greedy answers to the held-out prompts (decoded on a forked RNG: training draws are untouched)."""
        return sample(self.policy_of(model), self.tokenizer, [r.prompt for r in self.eval_rows], n=1,
                      settings=self.sampling(evaluation=True), seed=self.config.seed)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Greedy answers to the held-out prompts, scored by the reward sources."""
        if not self.eval_rows:
            return {}
        rollout = self.greedy_answers(model)
        _, metrics = self.score(rollout, self.eval_rows)
        lengths = [float(r.numel()) for r in rollout.response_ids]
        metrics["response_length"] = sum(lengths) / len(lengths)
        metrics["finished"] = sum(rollout.finished) / len(rollout)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state_dict(), "initial_answers": self.initial_answers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "monitor" in state:  # checkpoints from before the monitors have none
            self.monitor.load_state_dict(state["monitor"])
            self.initial_answers = state["initial_answers"]

    def finish(self, model: nn.Module, out_dir: Path) -> dict[str, Any]:
        from bridle.eval.plots import plot_run

        written = plot_run(Path(self.config.output_dir))
        return {"plots": [str(p) for p in written]}
