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
from bridle.objectives.kl_control import adaptive_kl_coef
from bridle.ops import gae, group_normalize, kl_penalty, leave_one_out, whiten

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


def test_step_items_samples_once_per_round_and_covers_the_buffer_once_per_update_epoch():
    method = grpo(update_epochs=2)  # buffer 3 prompts × 4 = 12, steps of 2 × 2 = 4 → 3 per epoch, 6 per round
    method.prompts = rows(6)
    method._buffer, method._buffer_round = [], -1
    sampled = []

    def make_experience(model, round_index):
        sampled.append(round_index)
        items = [experience(2, score=100 * round_index + i, seed=i) for i in range(method.buffer_size())]
        return items, {"reward/mean": float(round_index)}

    method.make_experience = make_experience
    assert method.updates_per_round == 6
    for round_index in range(2):
        for epoch in range(2):
            seen = []
            for minibatch in range(3):
                step = round_index * 6 + epoch * 3 + minibatch
                items, metrics = method.step_items(None, step)
                assert len(items) == 4 and metrics["reward/mean"] == round_index
                assert metrics["epoch"] == (round_index + 1) * 3 / 6
                seen += [int(e.score) for e in items]
            assert sorted(seen) == [100 * round_index + i for i in range(12)], (round_index, epoch)
    assert sampled == [0, 1]


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


def test_valid_configs_pass_check_config():
    grpo().check_config()
    RAFT(RAFTConfig(reward=REWARD, num_samples=4, keep=2, prompts_per_rollout=2, batch_size=4), None).check_config()
    PPO(PPOConfig(reward=REWARD, prompts_per_rollout=4, batch_size=2, grad_accum=2), None).check_config()


# -- selection and advantages -----------------------------------------------------------------------------------
def test_raft_select_keeps_the_top_keep_of_each_group():
    method = RAFT(RAFTConfig(reward=REWARD, num_samples=4, keep=2), None)
    scores = [0.1, 0.9, 0.5, 0.3, -1.0, -3.0, -2.0, 2.0]
    kept = method.select([experience(1, score=s, seed=i) for i, s in enumerate(scores)])
    assert [e.score for e in kept] == [0.9, 0.5, 2.0, -1.0]
    assert method.buffer_size() == 8 * 2


def test_grpo_advantages_are_group_normalized_and_rloo_uses_leave_one_out_with_the_kl_in_the_reward():
    scores = [1.0, 0.0, 0.0, 1.0, 2.0, 2.0]
    items = [experience(2, score=s, seed=i) for i, s in enumerate(scores)]
    metrics = GRPO(GRPOConfig(reward=REWARD, num_samples=3), None).advantages(None, items)
    expected = group_normalize(torch.tensor(scores), 3)
    assert torch.stack([e.advantages for e in items]).tolist() == pytest.approx(expected.tolist())
    assert metrics["reward/zero_std_groups"] == 0.0
    for e in items:
        e.ref_logps = e.sample_logps - 0.25  # k1 KL of 0.25 per token, 0.5 per response
    RLOO(RLOOConfig(reward=REWARD, num_samples=2, beta=0.1), None).advantages(None, items)
    expected = leave_one_out(torch.tensor(scores) - 0.1 * 0.5, 2)
    assert torch.stack([e.advantages for e in items]).tolist() == pytest.approx(expected.tolist())


@pytest.fixture
def ppo_setup(tiny_model_dir):
    def build(**overrides):
        keys = {"model": str(tiny_model_dir), "reward": REWARD, "prompts_per_rollout": 4, "batch_size": 2}
        method = PPO(PPOConfig(**{**keys, **overrides}), tiny_tokenizer())
        model = method.build_model()
        method.before_training(model, rows(4), [])
        return method, model
    return build


@pytest.mark.parametrize("critic", ["separate", "shared"])
def test_ppo_advantages_are_whitened_gae_and_returns_are_raw_advantages_plus_values(ppo_setup, critic):
    method, model = ppo_setup(critic=critic, beta=0.1, gamma=0.9, lam=0.8, reward_clip=10.0)
    items = [experience(3, score=1.0, seed=1), experience(5, score=25.0, seed=2), experience(2, score=-0.5, seed=3)]
    for k, e in enumerate(items):
        e.ref_logps = e.sample_logps - 0.1 * (k + 1)
    device = torch.device("cpu")
    model.eval()
    values = method.token_pass(items, lambda b: method._values(model, b), device)
    model.train()
    metrics = method.advantages(model, items)
    # rewards by hand: −β·KL on every token (k1 = sample − ref), the clipped score on the last
    width = 5
    mask = torch.zeros(3, width, dtype=torch.bool)
    rewards, padded_values = torch.zeros(3, width), torch.zeros(3, width)
    for i, (e, v, score) in enumerate(zip(items, values, [1.0, 10.0, -0.5])):
        n = e.length
        mask[i, :n] = True
        rewards[i, :n] = -0.1 * (0.1 * (i + 1))
        rewards[i, n - 1] += score
        padded_values[i, :n] = v
    raw, returns = gae(rewards, padded_values, mask, gamma=0.9, lam=0.8)
    whitened = whiten(raw, mask)
    for i, e in enumerate(items):
        n = e.length
        torch.testing.assert_close(e.old_values, values[i])
        torch.testing.assert_close(e.advantages, whitened[i, :n], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(e.returns, returns[i, :n], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(e.returns, raw[i, :n] + values[i], rtol=1e-5, atol=1e-5)
    flat = torch.cat([e.advantages for e in items])
    assert abs(float(flat.mean())) < 1e-5 and float(flat.std()) == pytest.approx(1.0, abs=1e-4)
    assert metrics["reward/score"] == pytest.approx((1.0 + 10.0 - 0.5) / 3)
    assert metrics["kl/ref"] == pytest.approx((0.1 * 3 + 0.2 * 5 + 0.3 * 2) / 3, abs=1e-5)
    assert metrics["kl/coef"] == 0.1


def test_ppo_adaptive_kl_coefficient_moves_toward_its_target_and_is_checkpointed(ppo_setup):
    method, model = ppo_setup(beta=0.1, kl_target=0.5, kl_horizon=10)
    items = [experience(4, seed=i) for i in range(4)]
    for e in items:
        e.ref_logps = e.sample_logps - 1.0  # KL 4 per response: above the target 0.5
    method.advantages(model, items)
    high = method.kl.coef
    assert high == pytest.approx(adaptive_kl_coef(0.1, 4.0, target=0.5, horizon=10, n_steps=4)) and high > 0.1
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
