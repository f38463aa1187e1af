import pytest

from bridle.engine.batches import BatchPlan
from bridle.engine.schedule import lr_factor


def test_warmup_rises_linearly_then_cosine_decays_to_zero():
    factors = [lr_factor(s, total_steps=10, warmup_steps=2, kind="cosine") for s in range(11)]
    assert factors[0] == 0.5 and factors[1] == 1.0 and factors[2] == 1.0
    assert factors[6] == pytest.approx(0.5)
    assert factors[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))


def test_linear_and_constant_schedules():
    assert lr_factor(5, total_steps=10, warmup_steps=0, kind="linear") == pytest.approx(0.5)
    assert lr_factor(9, total_steps=10, warmup_steps=0, kind="constant") == 1.0


def test_batch_plan_covers_each_item_once_per_epoch_and_reshuffles_between_epochs():
    plan = BatchPlan(10, 3, seed=1)
    assert plan.per_epoch == 4
    epoch0 = [i for m in range(4) for i in plan.indices(m)]
    epoch1 = [i for m in range(4, 8) for i in plan.indices(m)]
    assert sorted(epoch0) == list(range(10)) and sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1
    assert len(plan.indices(3)) == 1  # the last partial batch is kept, not dropped


def test_batch_plan_is_a_pure_function_of_seed_and_position():
    a, b = BatchPlan(50, 4, seed=7), BatchPlan(50, 4, seed=7)
    assert [a.indices(m) for m in (30, 2, 17)] == [b.indices(m) for m in (30, 2, 17)]


def test_batch_plan_shards_disjointly_across_processes():
    shards = [BatchPlan(12, 2, seed=0, process_index=r, num_processes=3).indices(1) for r in range(3)]
    flat = [i for s in shards for i in s]
    assert len(flat) == len(set(flat)) == 6
