"""Online methods (PPO, GRPO, RLOO, RAFT) without the engine: batching of experience, the round / mini-batch
schedule, config errors, RAFT's selection, and how each method turns scores into advantages."""

from __future__ import annotations

import pytest
import torch

from bridle.data.prompts import PromptRow
from bridle.data.tokenize import IGNORE_INDEX
from bridle.errors import ConfigError
from bridle.methods.experience import Experience, collate_experience
from bridle.methods.grpo import GRPO, RLOO, GRPOConfig, RLOOConfig
from bridle.methods.ppo import PPO, PPOConfig
from bridle.methods.raft import RAFT, RAFTConfig
from bridle.models import tiny_tokenizer
from bridle.models.tiny import EOS_ID
from bridle.ops import kl_penalty

REWARD = "math_exact_match"


def rows(n: int) -> list[PromptRow]:
    return [PromptRow(prompt=f"What is {i} + 1?", columns={"answer": f"#### {i + 1}"}, source="mem", row=i + 1)
            for i in range(n)]


def experience(length: int, score: float = 0.0, seed: int = 0, prompt_length: int = 4) -> Experience:
    g = torch.Generator().manual_seed(seed)
    return Experience(prompt_ids=torch.randint(3, 200, (prompt_length,), generator=g),
                      response_ids=torch.randint(3, 200, (length,), generator=g), score=score,
                      sample_logps=-torch.rand(length, generator=g) - 0.5)


# -- batching -------------------------------------------------------------------------------------------------
def test_collate_experience_keeps_eos_in_labels_and_aligns_per_token_fields_to_the_response():
    a = Experience(prompt_ids=torch.tensor([5, 6, 7]), response_ids=torch.tensor([10, 11, EOS_ID]), score=1.0,
                   ref_logps=torch.tensor([-1.0, -2.0, -3.0]), old_logps=torch.tensor([-0.5, -0.6, -0.7]),
                   advantages=torch.tensor(0.5))
    b = Experience(prompt_ids=torch.tensor([8]), response_ids=torch.tensor([12]), score=-1.0,
                   ref_logps=torch.tensor([-4.0]), old_logps=torch.tensor([-0.8]), advantages=torch.tensor(-0.5))
    batch = collate_experience([a, b], pad_id=EOS_ID)
    pad = EOS_ID
    assert batch["input_ids"].tolist() == [[5, 6, 7, 10, 11, EOS_ID], [8, 12, pad, pad, pad, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]]  # EOS attended, pad not
    x = IGNORE_INDEX
    assert batch["labels"].tolist() == [[x, x, x, 10, 11, EOS_ID], [x, 12, x, x, x, x]]  # EOS is learned
    assert batch["response_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["ref_logps"].tolist() == [[-1.0, -2.0, -3.0], [-4.0, 0.0, 0.0]]
    torch.testing.assert_close(batch["old_logps"], torch.tensor([[-0.5, -0.6, -0.7], [-0.8, 0.0, 0.0]]))
    assert batch["advantages"].shape == (2,) and batch["advantages"].tolist() == [0.5, -0.5]  # scalars → (B,)
    assert batch["scores"].tolist() == [1.0, -1.0]
    assert "returns" not in batch and "old_values" not in batch  # absent fields stay absent
    assert batch["num_tokens"] == 6 + 2
    assert batch["weight"] == 4  # response tokens
    assert collate_experience([a, b], pad_id=EOS_ID, weight="sequences")["weight"] == 2


def test_per_token_advantages_are_padded_to_the_response_width():
    a, b = experience(3), experience(1, seed=1)
    a.advantages, b.advantages = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0])
    assert collate_experience([a, b], pad_id=EOS_ID)["advantages"].tolist() == [[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]]


# -- the schedule -----------------------------------------------------------------------------------------------
def grpo(**overrides) -> GRPO:
    keys = {"reward": REWARD, "prompts_per_rollout": 3, "num_samples": 4, "batch_size": 2, "grad_accum": 2}
    return GRPO(GRPOConfig(**{**keys, **overrides}), tiny_tokenizer())


def test_round_prompts_cover_every_prompt_once_per_pass_and_are_seeded():
    method = grpo(prompts_per_rollout=4)
    method.prompts = rows(10)
    taken = [r.row for k in range(5) for r in method.round_prompts(k)]  # 5 rounds × 4 = two passes over 10
    assert sorted(taken[:10]) == sorted(taken[10:]) == list(range(1, 11))
    assert taken[:10] != taken[10:]  # each pass has its own order
    assert taken[:10] != list(range(1, 11))  # shuffled
    again = grpo(prompts_per_rollout=4)
    again.prompts = rows(10)
    assert [r.row for r in again.round_prompts(3)] == taken[12:16]  # a round's prompts depend on its index only
    other = grpo(prompts_per_rollout=4, seed=1)
    other.prompts = rows(10)
    assert [r.row for k in range(5) for r in other.round_prompts(k)] != taken


class RecordingEngine:
    """What `OnlineMethod.train` needs from the engine, recording each optimizer step instead of taking it."""

    def __init__(self, total_steps: int, step: int = 0) -> None:
        self.total_steps, self.step = total_steps, step
        self.unwrapped_model = None
        self.steps: list[tuple[list[dict], dict]] = []  # (micro-batches, metrics) per optimizer step

    def rollout_model(self):
        return self.unwrapped_model

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    def optimizer_step(self, batches, extra_metrics):
        self.steps.append((batches, dict(extra_metrics)))
        return dict(extra_metrics), 0

    def after_step(self, metrics, tokens):
        self.step += 1


def scheduled_grpo(**overrides):
    """A GRPO whose rounds are made up: response i of round k has score 100·k + i. Records the rounds it samples."""
    method = grpo(**overrides)
    method.prompts = rows(6)
    method.sampled = []

    def make_experience(model, round_index):
        method.sampled.append(round_index)
        items = [experience(2, score=100 * round_index + i, seed=i) for i in range(method.buffer_size())]
        return items, {"reward/mean": float(round_index)}

    method.make_experience = make_experience
    return method


def test_train_samples_once_per_round_and_covers_the_round_once_per_update_epoch():
    method = scheduled_grpo(update_epochs=2)  # 3 prompts × 4 = 12 responses, steps of 2 × 2 = 4 → 3 per epoch
    assert method.updates_per_round == 6
    engine = RecordingEngine(total_steps=12)
    method.train(engine, 0)
    assert method.sampled == [0, 1] and engine.step == 12
    for step, (batches, metrics) in enumerate(engine.steps):
        round_index = step // 6
        assert len(batches) == 2 and all(b["input_ids"].shape[0] == 2 for b in batches)  # grad_accum × batch_size
        assert metrics["reward/mean"] == round_index and metrics["epoch"] == (round_index + 1) * 3 / 6
    scores = [[int(s) for b in batches for s in b["scores"]] for batches, _ in engine.steps]
    for first in range(0, 12, 3):  # each update epoch: 3 steps that split the round's 12 responses exactly once
        round_index = first // 6
        assert sorted(sum(scores[first:first + 3], [])) == [100 * round_index + i for i in range(12)], first
    assert scores[0:3] != scores[3:6]  # each update epoch has its own order


def test_train_resumed_at_a_round_boundary_repeats_the_uninterrupted_steps():
    whole, resumed = scheduled_grpo(update_epochs=2), scheduled_grpo(update_epochs=2)
    whole_engine, resumed_engine = RecordingEngine(total_steps=12), RecordingEngine(total_steps=12, step=6)
    whole.train(whole_engine, 0)
    resumed.train(resumed_engine, 6)
    assert resumed.sampled == [1]
    scores = [[b["scores"].tolist() for b in batches] for batches, _ in whole_engine.steps]
    assert [[b["scores"].tolist() for b in batches] for batches, _ in resumed_engine.steps] == scores[6:]
    with pytest.raises(ConfigError, match="inside a round of 6 updates"):
        scheduled_grpo(update_epochs=2).train(RecordingEngine(total_steps=12, step=4), 4)


def test_train_stops_at_max_steps_inside_a_round():
    method = scheduled_grpo(update_epochs=2)
    engine = RecordingEngine(total_steps=8)  # round 0's 6 updates and 2 of round 1's
    method.train(engine, 0)
    assert method.sampled == [0, 1] and len(engine.steps) == 8 and engine.step == 8


def test_planned_steps_count_rounds_over_the_epochs():
    method = grpo(update_epochs=2, epochs=2.0)
    method.prompts = rows(6)
    assert method.planned_steps() == 4 * 6  # ceil(2 × 6 / 3) = 4 rounds of 6 updates


@pytest.mark.parametrize(("cls", "config", "message"), [
    (GRPO, GRPOConfig(reward=REWARD, prompts_per_rollout=3, num_samples=3, batch_size=2, grad_accum=2),
     "does not split into optimizer steps of batch_size × grad_accum = 4"),
    (GRPO, GRPOConfig(reward=REWARD, num_samples=1, batch_size=4, grad_accum=1),
     "--num-samples must be >= 2"),
    (RLOO, RLOOConfig(reward=REWARD, num_samples=1, batch_size=8, grad_accum=1), "--num-samples must be >= 2"),
    (RAFT, RAFTConfig(reward=REWARD, num_samples=2, keep=3), "--keep must be between 1 and --num-samples (2)"),
    (RAFT, RAFTConfig(reward=REWARD, beta=0.1), "leave --beta at 0"),
    (PPO, PPOConfig(reward=""), "bridle ppo needs --reward"),
    (GRPO, GRPOConfig(reward="", batch_size=4, grad_accum=1), "bridle grpo needs --reward"),
    (PPO, PPOConfig(reward=REWARD, beta=-1.0, batch_size=4), "--beta and --kl-target must be >= 0"),
    (PPO, PPOConfig(reward=REWARD, max_new_tokens=0, batch_size=4), "'max_new_tokens' must be >= 1"),
])
def test_check_config_errors_say_what_to_change(cls, config, message):
    with pytest.raises(ConfigError) as raised:
        cls(config, tiny_tokenizer()).check_config()
    assert message in str(raised.value)


def test_valid_configs_pass_check_config_and_split_each_round_into_whole_optimizer_steps():
    method = grpo()  # 3 prompts × 4 samples = 12 responses, steps of 2 × 2 = 4
    method.check_config()
    assert (method.buffer_size(), method.updates_per_round) == (12, 3)
    raft = RAFT(RAFTConfig(reward=REWARD, num_samples=4, keep=2, prompts_per_rollout=2, batch_size=4), None)
    raft.check_config()  # RAFT trains on the kept responses only: 2 prompts × keep 2 = 4, one step
    assert (raft.buffer_size(), raft.updates_per_round) == (4, 1)
    ppo = PPO(PPOConfig(reward=REWARD, prompts_per_rollout=4, batch_size=2, grad_accum=2), None)
    ppo.check_config()  # 4 responses, steps of 4, 4 update epochs (PPO's default)
    assert (ppo.buffer_size(), ppo.updates_per_round) == (4, 4)
    with pytest.raises(ConfigError, match="does not split"):  # one key off, and the same shapes are refused
        RAFT(RAFTConfig(reward=REWARD, num_samples=4, keep=3, prompts_per_rollout=2, batch_size=4),
             None).check_config()


# -- selection and advantages -----------------------------------------------------------------------------------
def test_raft_select_keeps_the_top_keep_of_each_group():
    method = RAFT(RAFTConfig(reward=REWARD, num_samples=4, keep=2), None)
    scores = [0.1, 0.9, 0.5, 0.3, -1.0, -3.0, -2.0, 2.0]
    kept = method.select([experience(1, score=s, seed=i) for i, s in enumerate(scores)])
    assert [e.score for e in kept] == [0.9, 0.5, 2.0, -1.0]
    assert method.buffer_size() == 8 * 2


@pytest.mark.parametrize(("scale", "expected"), [
    # group [1, 0, 0]: mean 1/3, deviations [2/3, −1/3, −1/3], unbiased std √((4/9 + 1/9 + 1/9)/2) = √(1/3) = 0.577350
    #   → [0.666667, −0.333333, −0.333333] / (0.577350 + 1e-4) = [1.154501, −0.577250, −0.577250]
    # group [1, 2, 2]: mean 5/3, deviations [−2/3, 1/3, 1/3], same std → [−1.154501, 0.577250, 0.577250]
    (True, [1.154501, -0.577250, -0.577250, -1.154501, 0.577250, 0.577250]),
    # --no-scale-rewards (Dr. GRPO): only the group mean is removed
    (False, [0.666667, -0.333333, -0.333333, -0.666667, 0.333333, 0.333333]),
])
def test_grpo_advantages_are_rewards_normalized_within_each_group(scale, expected):
    scores = [1.0, 0.0, 0.0, 1.0, 2.0, 2.0]
    items = [experience(2, score=s, seed=i) for i, s in enumerate(scores)]
    metrics = GRPO(GRPOConfig(reward=REWARD, num_samples=3, scale_rewards=scale), None).advantages(None, items)
    assert [float(e.advantages) for e in items] == pytest.approx(expected, abs=1e-6)
    assert metrics["reward/group_std"] == pytest.approx(0.577350, abs=1e-6)
    assert metrics["reward/zero_std_groups"] == 0.0


@pytest.mark.parametrize(("estimator", "expected", "kl_mean"), [
    # k1 per token = sample − ref = c, c = [0.25, 0, 0.5, 0] → Σ over 2 tokens: [0.5, 0, 1.0, 0]
    # r = score − 0.1·KL = [1 − 0.05, 0, 0 − 0.1, 1] = [0.95, 0, −0.1, 1.0]
    # leave one out, G = 2: A_i = r_i − r_other = [0.95, −0.95, −1.1, 1.1]
    ("k1", [0.95, -0.95, -1.1, 1.1], 0.375),
    # k2 = ½c² = [0.03125, 0, 0.125, 0] → Σ: [0.0625, 0, 0.25, 0] → r = [0.99375, 0, −0.025, 1.0]
    ("k2", [0.99375, -0.99375, -1.025, 1.025], 0.078125),
])
def test_rloo_advantages_are_leave_one_out_on_rewards_minus_beta_times_the_summed_kl(estimator, expected, kl_mean):
    items = [experience(2, score=s, seed=i) for i, s in enumerate([1.0, 0.0, 0.0, 1.0])]
    for e, c in zip(items, [0.25, 0.0, 0.5, 0.0]):
        e.ref_logps = e.sample_logps - c
    method = RLOO(RLOOConfig(reward=REWARD, num_samples=2, beta=0.1, kl_estimator=estimator), None)
    metrics = method.advantages(None, items)
    assert [float(e.advantages) for e in items] == pytest.approx(expected, abs=1e-6)
    assert metrics["kl/ref"] == pytest.approx(kl_mean, abs=1e-6)


@pytest.fixture
def ppo_setup(tiny_model_dir):
    def build(**overrides):
        keys = {"model": str(tiny_model_dir), "reward": REWARD, "prompts_per_rollout": 4, "batch_size": 2}
        method = PPO(PPOConfig(**{**keys, **overrides}), tiny_tokenizer())
        model = method.build_model()
        method.before_training(model, rows(4), [])
        return method, model
    return build


def ppo_items(scores: tuple[float, float]) -> list[Experience]:
    """Two responses of 2 and 3 tokens; k1 KL per token (sample − ref) [0.5, 0] and [0, 1, 0.5]; rollout-time
    values set by hand (so the critic is not run) [0.5, 0.4] and [0.2, 0.1, 0.3]."""
    items = [experience(2, score=scores[0], seed=1), experience(3, score=scores[1], seed=2)]
    for e, kl, values in zip(items, ([0.5, 0.0], [0.0, 1.0, 0.5]), ([0.5, 0.4], [0.2, 0.1, 0.3])):
        e.ref_logps = e.sample_logps - torch.tensor(kl)
        e.old_values = torch.tensor(values)
    return items


def test_ppo_advantages_are_whitened_gae_of_the_kl_penalized_clipped_score(ppo_setup):
    method, model = ppo_setup(beta=0.2, gamma=0.9, lam=0.5, reward_clip=2.0)
    items = ppo_items((1.0, 3.0))
    metrics = method.advantages(model, items)
    # rewards r_t = −β·KL_t, plus the score (clipped to ±2) on the last token:
    #   A: [−0.2·0.5, 1.0] = [−0.1, 1.0];   B: [0, −0.2·1, −0.2·0.5 + 2] = [0, −0.2, 1.9]
    # GAE, γ = 0.9, λ = 0.5 (γλ = 0.45), V after the last token 0:
    #   A: δ1 = 1 − 0.4 = 0.6;  δ0 = −0.1 + 0.9·0.4 − 0.5 = −0.24;  A = [−0.24 + 0.45·0.6, 0.6] = [0.03, 0.6]
    #   B: δ2 = 1.9 − 0.3 = 1.6;  δ1 = −0.2 + 0.9·0.3 − 0.1 = −0.03;  δ0 = 0.9·0.1 − 0.2 = −0.11
    #      A = [−0.11 + 0.45·0.69, −0.03 + 0.45·1.6, 1.6] = [0.2005, 0.69, 1.6]
    #   returns = A + V: [0.53, 1.0] and [0.4005, 0.79, 1.9]
    # whitened over the round's 5 tokens: mean 0.6241, unbiased std 0.610266
    #   → [−0.973511, −0.039491] and [−0.694124, 0.107986, 1.599140]
    assert items[0].advantages.tolist() == pytest.approx([-0.973511, -0.039491], abs=1e-5)
    assert items[1].advantages.tolist() == pytest.approx([-0.694124, 0.107986, 1.599140], abs=1e-5)
    assert items[0].returns.tolist() == pytest.approx([0.53, 1.0], abs=1e-6)
    assert items[1].returns.tolist() == pytest.approx([0.4005, 0.79, 1.9], abs=1e-6)
    assert items[1].old_values.tolist() == pytest.approx([0.2, 0.1, 0.3])  # the values the returns were built on
    assert metrics["reward/score"] == pytest.approx((1.0 + 2.0) / 2)  # the clipped score
    assert metrics["kl/ref"] == pytest.approx((0.5 + 1.5) / 2)  # per response, summed over tokens
    assert metrics["kl/coef"] == 0.2
    assert metrics["reward/total"] == pytest.approx((0.9 + 1.7) / 2)  # Σ_t r_t per response


def test_ppo_whiten_rewards_and_kl_estimator_change_the_rewards_before_gae(ppo_setup):
    method, model = ppo_setup(beta=0.2, gamma=1.0, lam=1.0, reward_clip=0.0, kl_estimator="k2",
                              whiten_rewards=True)
    items = ppo_items((1.0, 3.0))
    method.advantages(model, items)
    # k2 = ½(log ratio)²: [0.125, 0] and [0, 0.5, 0.125]; no score clipping (reward_clip 0):
    #   rewards [−0.025, 1.0] and [0, −0.1, −0.025 + 3] = [0, −0.1, 2.975]
    # whitened, mean kept (shift_mean=False): mean 0.77, unbiased std 1.313083
    #   → (r − 0.77)/1.313083 + 0.77 = [0.164555, 0.945160] and [0.183594, 0.107437, 2.449254]
    # γ = λ = 1: returns are the reward-to-go, A = returns − V:
    #   returns [1.109715, 0.945160] and [2.740285, 2.556691, 2.449254]
    #   A = [0.609715, 0.545160] and [2.540285, 2.456691, 2.149254]
    # whitened: mean 1.660221, unbiased std 0.999369
    #   → [−1.051169, −1.115765] and [0.880620, 0.796973, 0.489342]
    assert items[0].returns.tolist() == pytest.approx([1.109715, 0.945160], abs=1e-5)
    assert items[1].returns.tolist() == pytest.approx([2.740285, 2.556691, 2.449254], abs=1e-5)
    assert items[0].advantages.tolist() == pytest.approx([-1.051169, -1.115765], abs=1e-5)
    assert items[1].advantages.tolist() == pytest.approx([0.880620, 0.796973, 0.489342], abs=1e-5)


def test_ppo_adaptive_kl_coefficient_moves_toward_its_target_and_is_checkpointed(ppo_setup):
    method, model = ppo_setup(beta=0.1, kl_target=0.5, kl_horizon=10)
    items = [experience(4, seed=i) for i in range(4)]
    for e in items:
        e.ref_logps = e.sample_logps - 1.0  # KL 4 per response: above the target 0.5
    method.advantages(model, items)
    high = method.kl.coef
    # error = clip(4 / 0.5 − 1, ±0.2) = 0.2;  β = 0.1 · (1 + 0.2 · 4 / 10) = 0.108
    assert high == pytest.approx(0.108)
    for e in items:
        e.ref_logps = e.sample_logps.clone()  # KL 0: below the target
    metrics = method.advantages(model, items)
    assert metrics["kl/coef"] == high and method.kl.coef < high
    saved = method.state_dict()
    resumed, _ = ppo_setup(beta=0.1, kl_target=0.5, kl_horizon=10)
    resumed.load_state_dict(saved)
    assert resumed.kl.coef == method.kl.coef
    fixed, fixed_model = ppo_setup(beta=0.1)
    fixed.advantages(fixed_model, [experience(4, seed=i) for i in range(2)])
    assert fixed.kl.coef == 0.1


def test_make_experience_freezes_old_and_reference_logps_that_match_the_sampling_logps_at_the_start(
        tiny_model_dir):
    config = GRPOConfig(model=str(tiny_model_dir), reward=REWARD, prompts_per_rollout=2, num_samples=2, batch_size=2,
                        grad_accum=1, update_epochs=2, max_new_tokens=4, temperature=0.8, beta=0.04)
    method = GRPO(config, tiny_tokenizer())
    model = method.build_model()
    method.before_training(model, rows(4), [])
    items, metrics = method.make_experience(model, 0)
    assert len(items) == 4 and {"reward/mean", "reward/math_exact_match", "rollout/entropy"} <= metrics.keys()
    for e in items:
        assert e.advantages is not None and e.advantages.dim() == 0
        # the policy has not moved yet: π_old = π_ref = the sampling policy
        torch.testing.assert_close(e.old_logps, e.sample_logps, rtol=0, atol=1e-4)
        torch.testing.assert_close(e.ref_logps, e.sample_logps, rtol=0, atol=1e-4)
        assert float(kl_penalty(e.sample_logps, e.ref_logps, "k3").abs().max()) < 1e-4
    one_update = {**vars(config), "update_epochs": 1, "grad_accum": 2, "beta": 0.0}  # buffer 4 = one step
    single = GRPO(GRPOConfig(**one_update), tiny_tokenizer())
    single.before_training(model, rows(4), [])
    assert single.updates_per_round == 1 and single.reference is None
    items, _ = single.make_experience(model, 0)
    assert all(e.old_logps is None and e.ref_logps is None for e in items)  # one update: ratio from the step itself


def test_ppo_shared_critic_reads_old_logps_and_values_from_one_pass_equal_to_separate_passes(ppo_setup):
    method, model = ppo_setup(critic="shared", beta=0.1, update_epochs=2, max_new_tokens=4)
    items, _ = method.make_experience(model, 0)
    model.eval()
    batch = collate_experience(items, pad_id=0)
    logps = method.logps(model.policy, batch)
    values = method._values(model, batch)
    for i, e in enumerate(items):
        torch.testing.assert_close(e.old_logps, logps[i, :e.length], rtol=0, atol=1e-5)
        torch.testing.assert_close(e.old_values, values[i, :e.length], rtol=0, atol=1e-5)
    # the advantages step reuses the values read in the π_old pass instead of running the trunk again
    calls = {"n": 0}
    model.policy.get_decoder().register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    method.advantages(model, items)
    assert calls["n"] == 0


@pytest.mark.parametrize("sampler", ["fast", "hf"])
def test_the_sampler_key_reaches_the_rounds_and_the_greedy_evaluation(tiny_model_dir, monkeypatch, sampler):
    import bridle.rollout.rollout as rollout_module

    used: list[str] = []
    for name in ("decode", "hf_decode"):
        real = getattr(rollout_module, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            used.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(rollout_module, name, spy)
    config = GRPOConfig(model=str(tiny_model_dir), reward=REWARD, prompts_per_rollout=2, num_samples=2,
                        batch_size=2, grad_accum=2, max_new_tokens=3, beta=0.0, sampler=sampler)
    method = GRPO(config, tiny_tokenizer())
    model = method.build_model()
    method.before_training(model, rows(2), rows(2))
    method.make_experience(model, 0)
    assert method.greedy_answers(model).texts
    assert len(used) >= 2 and set(used) == {"decode" if sampler == "fast" else "hf_decode"}
