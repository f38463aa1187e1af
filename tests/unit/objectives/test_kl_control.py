"""Adaptive and fixed KL coefficient controllers (Ziegler et al. 2019) against hand-computed updates."""

from __future__ import annotations

import pytest

from bridle.objectives.kl_control import KLController, adaptive_kl_coef

# β = 0.2, target 6, horizon 10,000, 256 samples per step → n_steps/horizon = 0.0256
STEP = {"target": 6.0, "horizon": 10_000, "n_steps": 256}


def test_adaptive_coef_rises_above_target_and_falls_below():
    # KL 6.6: e = 6.6/6 − 1 = 0.1 → 0.2·(1 + 0.1·0.0256) = 0.200512
    assert adaptive_kl_coef(0.2, 6.6, **STEP) == pytest.approx(0.200512)
    # KL 6 (on target): e = 0 → unchanged
    assert adaptive_kl_coef(0.2, 6.0, **STEP) == pytest.approx(0.2)
    # KL 5.4: e = −0.1 → 0.2·(1 − 0.00256) = 0.199488
    assert adaptive_kl_coef(0.2, 5.4, **STEP) == pytest.approx(0.199488)


def test_adaptive_coef_error_is_clipped_at_twenty_percent():
    # KL 9: e = 0.5 → clipped 0.2 → 0.2·(1 + 0.2·0.0256) = 0.201024; KL 1000 gives the same
    assert adaptive_kl_coef(0.2, 9.0, **STEP) == pytest.approx(0.201024)
    assert adaptive_kl_coef(0.2, 1000.0, **STEP) == pytest.approx(0.201024)
    # KL 3: e = −0.5 → −0.2 → 0.2·(1 − 0.00512) = 0.198976; KL 0 the same
    assert adaptive_kl_coef(0.2, 3.0, **STEP) == pytest.approx(0.198976)
    assert adaptive_kl_coef(0.2, 0.0, **STEP) == pytest.approx(0.198976)
    # a whole horizon of samples moves β by at most ±20%: 0.2·1.2 = 0.24, 0.2·0.8 = 0.16
    assert adaptive_kl_coef(0.2, 100.0, target=6.0, horizon=100, n_steps=100) == pytest.approx(0.24)
    assert adaptive_kl_coef(0.2, 0.0, target=6.0, horizon=100, n_steps=100) == pytest.approx(0.16)


def test_adaptive_coef_rejects_nonpositive_target():
    with pytest.raises(ValueError, match="positive"):
        adaptive_kl_coef(0.2, 1.0, target=0.0, horizon=10, n_steps=1)


def test_controller_is_fixed_without_target_and_compounds_with_one():
    fixed = KLController(coef=0.05)
    assert fixed.update(kl=100.0, n_steps=256) == 0.05 and fixed.coef == 0.05
    adaptive = KLController(coef=0.2, target=6.0, horizon=10_000)
    # two steps at KL 9: 0.2·1.00512² = 0.202053
    adaptive.update(9.0, 256)
    assert adaptive.update(9.0, 256) == pytest.approx(0.2 * 1.00512**2)
    assert adaptive.coef == pytest.approx(0.202053, abs=1e-6)


def test_controller_state_dict_restores_the_coefficient():
    trained = KLController(coef=0.2, target=6.0)
    trained.update(9.0, 256)
    resumed = KLController(coef=0.2, target=6.0)
    resumed.load_state_dict(trained.state_dict())
    assert resumed.coef == trained.coef
    assert resumed.update(3.0, 256) == pytest.approx(trained.update(3.0, 256))
