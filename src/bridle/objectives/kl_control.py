"""KL coefficient controllers for RL with a KL penalty to the reference (Ziegler et al. 2019, section 2.2).

The reward the policy optimizes is r(x, y) − β · KL(π ‖ π_ref); β is either fixed or adapted so the observed KL
tracks a target. `adaptive_kl_coef` is the pure update; `KLController` carries β between steps and into
checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR_CLIP = 0.2  # Ziegler et al.: the proportional error is clipped to ±0.2


def adaptive_kl_coef(coef: float, kl: float, *, target: float, horizon: int, n_steps: int) -> float:
    """One step of the adaptive KL controller (Ziegler et al. 2019, section 2.2; TRL's AdaptiveKLController).

    e_t = clip(KL_t / KL_target − 1, −0.2, 0.2),    β ← β · (1 + e_t · n_steps / horizon).

    `kl`: the observed KL(π ‖ π_ref) of the batch (per sequence, summed over tokens); `n_steps`: the number of
    samples (episodes) since the last update. β rises while KL is above target and falls while below, by at most
    20% per `horizon` samples.
    """
    if target <= 0 or horizon <= 0:
        raise ValueError(f"target and horizon must be positive; got target={target}, horizon={horizon}")
    error = min(max(float(kl) / target - 1, -ERROR_CLIP), ERROR_CLIP)
    return coef * (1 + error * n_steps / horizon)


@dataclass
class KLController:
    """The KL coefficient β: fixed when `target` is None, else adapted with `adaptive_kl_coef`.

    Defaults follow Ziegler et al.: horizon 10,000 samples. Only β changes during training, so `state_dict` holds
    just `coef`; `target` and `horizon` come from the run's config on resume.
    """

    coef: float
    target: float | None = None
    horizon: int = 10_000

    def update(self, kl: float, n_steps: int) -> float:
        """Adapt β to the observed `kl` over `n_steps` samples (no-op when fixed); returns the new β."""
        if self.target is not None:
            self.coef = adaptive_kl_coef(self.coef, kl, target=self.target, horizon=self.horizon, n_steps=n_steps)
        return self.coef

    def state_dict(self) -> dict[str, float]:
        return {"coef": self.coef}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.coef = float(state["coef"])


__all__ = ["KLController", "adaptive_kl_coef"]
