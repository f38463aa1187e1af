"""Rollout workers and reward scoring as Ray actors, on this machine or across a Ray cluster (docs/scaling.md).

The round structure stays the online method's: each training process takes its shards of the round's prompts.
With `--rollout-workers K` those shards are sampled by K Ray actors instead of the training process: at the start
of a round the policy's current weights go into Ray's object store once (`ray.put`), every worker loads them into
its own copy of the policy, and the shards are sampled concurrently, each with the seed it has without Ray, so the
rollouts are the ones the training process would have drawn. With `--reward-workers K` the responses are scored by
K actors, each holding the `--reward` sources (a reward model loads once per actor), the samples cut into K equal
parts. Ray is optional: `--ray-address local` starts a one-machine Ray on the loopback interface, `auto` or
HOST:PORT joins a cluster started with `ray start` (one `--head`, the others `--address`)."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from bridle.errors import ConfigError
from bridle.feedback import RewardBatch
from bridle.rollout.rollout import Rollout, SamplingSettings, sample

LOCAL_OBJECT_STORE = 256 * 1024 * 1024  # a one-machine Ray: its shared-memory store (weights, rollouts) in bytes


def check_ray(address: str, rollout_workers: int, reward_workers: int) -> None:
    """Refuse workers without a Ray address, an address without workers, and either without Ray installed."""
    if rollout_workers < 0 or reward_workers < 0:
        raise ConfigError("--rollout-workers and --reward-workers must be >= 0.")
    wanted = rollout_workers > 0 or reward_workers > 0
    if wanted and not address:
        raise ConfigError("--rollout-workers / --reward-workers run as Ray actors: give --ray-address local (Ray on "
                          "this machine) or auto / HOST:PORT (a cluster started with `ray start`).")
    if address and not wanted:
        raise ConfigError(f"--ray-address {address} without --rollout-workers or --reward-workers: nothing would run "
                          "on Ray. Give one of them, or drop --ray-address.")
    if wanted:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--rollout-workers / --reward-workers need Ray, which is not installed: "
                              "pip install 'bridle[ray]' (or drop them: the training processes sample and score "
                              "themselves).") from None


def connect(address: str, workers: int) -> None:
    """Join (or with "local" start) the Ray cluster the actors run on, once per process, and check it has a CPU
    for each of the `workers` actors this process will start (else Ray would wait for them forever). Call it
    before building the pools."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reports nothing anywhere
        if address == "local":  # this machine only: every Ray process on the loopback interface. A CPU each,
            # even past the cores: they take turns on them as the training process's threads do
            ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1", object_store_memory=LOCAL_OBJECT_STORE)
        else:
            ray.init(address=address, log_to_driver=False)
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < workers:
        raise ConfigError(f"the Ray cluster at {address} has {cpus:g} CPUs for {workers} workers (one each): "
                          "start it with more (`ray start --num-cpus N`) or ask for fewer workers.")


def _actor(cls: type) -> Any:
    """`cls` as a Ray actor class of one CPU: the workers sample and score on CPU (asking Ray for GPUs, and moving
    the policy copy onto one, is not wired)."""
    import ray

    return ray.remote(num_cpus=1)(cls)


class RolloutWorker:
    """A Ray actor: a copy of the policy and the tokenizer; samples prompt shards with the weights it is handed."""

    def __init__(self, policy: nn.Module, tokenizer: Any) -> None:
        self.policy, self.tokenizer = policy, tokenizer
        self.policy.requires_grad_(False)

    def sample(self, weights: dict[str, Any], prompts: Sequence[Any], n: int, settings: SamplingSettings,
               seed: int) -> Rollout:
        self.policy.load_state_dict(weights)
        return sample(self.policy, self.tokenizer, prompts, n=n, settings=settings, seed=seed)


class RolloutPool:
    """K rollout workers; `sample_shards` samples a round's shards across them, each shard with its own seed."""

    def __init__(self, workers: int, policy: nn.Module, tokenizer: Any) -> None:
        import ray

        template = ray.put(copy.deepcopy(policy).cpu())
        self.workers = [_actor(RolloutWorker).remote(template, tokenizer) for _ in range(workers)]

    def sample_shards(self, policy: nn.Module, shards: Sequence[tuple[Sequence[Any], int]], n: int,
                      settings: SamplingSettings) -> list[Rollout]:
        """One `Rollout` per (prompts, seed) shard, in order; the policy's current weights pushed once."""
        import ray

        weights = ray.put({k: v.detach().cpu() for k, v in policy.state_dict().items()})
        futures = [self.workers[i % len(self.workers)].sample.remote(weights, prompts, n, settings, seed)
                   for i, (prompts, seed) in enumerate(shards)]
        return ray.get(futures)


class RewardWorker:
    """A Ray actor holding the reward sources (built from their spec, so a reward model loads in the actor)."""

    def __init__(self, spec: str, missing_eos_penalty: float, normalize: bool) -> None:
        from bridle.feedback import build_reward

        self.reward = build_reward(spec, missing_eos_penalty=missing_eos_penalty, normalize=normalize)

    def score(self, samples: Sequence[Any]) -> RewardBatch:
        return self.reward(samples)


class RewardPool:
    """K reward workers, called like a `CombinedReward`: the samples cut into K consecutive parts, scored
    concurrently, put back in order."""

    def __init__(self, workers: int, spec: str, *, missing_eos_penalty: float, normalize: bool) -> None:
        self.workers = [_actor(RewardWorker).remote(spec, missing_eos_penalty, normalize) for _ in range(workers)]

    def __call__(self, samples: Sequence[Any]) -> RewardBatch:
        import ray

        size = -(-len(samples) // len(self.workers))  # ceil: every worker but the last gets `size`
        parts = [samples[i:i + size] for i in range(0, len(samples), size)]
        results = ray.get([worker.score.remote(part) for worker, part in zip(self.workers, parts)])
        total = [t for r in results for t in r.total]
        names = results[0].parts if results else {}
        return RewardBatch(total, {name: [v for r in results for v in r.parts[name]] for name in names})
