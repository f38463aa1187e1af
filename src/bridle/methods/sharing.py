"""The `prefix_sharing` key of methods with several sequences per prompt (RM, DPO family, SimPO, ORPO, RRHF, GRPO,
RLOO): whether their batches hold each prompt once (`bridle.data.shared_prefix`), and the one-line notice when the
model cannot take the shared layout exactly and the plain one is used instead."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from bridle.config import option
from bridle.engine.logging import console
from bridle.models import unwrap
from bridle.ops.shared_prefix import shared_prefix_problem

PREFIX_SHARING_HELP = ("hold each prompt once in a batch, its responses after it (a mask keeps them apart; same "
                       "numbers, fewer tokens); off: one row per sequence")


def prefix_sharing_option(default: bool = True) -> Any:
    """The `prefix_sharing` config field (declared per config so each method's --help shows it)."""
    return option(default, PREFIX_SHARING_HELP)


def fallback_notice(problem: str) -> str:
    return f"prefix sharing off: {problem}; batches use the plain layout (--no-prefix-sharing skips this check)"


def decoder_body(model: nn.Module) -> nn.Module | None:
    """The decoder body of a causal LM (under peft/accelerate wrappers), which shared batches run through."""
    base = unwrap(model)
    return base.get_decoder() if hasattr(base, "get_decoder") else None


def body_sharing_problem(body: nn.Module | None, *, max_length: int) -> str | None:
    """Why the decoder `body` (None: the model exposes none) cannot run prefix-shared batches exactly, or None."""
    if body is None:
        return "the model exposes no decoder body (get_decoder)"
    return shared_prefix_problem(body, max_length=max_length)


def causal_lm_sharing_problem(model: nn.Module, *, max_length: int) -> str | None:
    """Why the causal LM `model` cannot run prefix-shared batches exactly (`shared_prefix_problem`), or None."""
    return body_sharing_problem(decoder_body(model), max_length=max_length)


def chosen_first(values: Tensor) -> Tensor:
    """(2B,) values of a prefix-shared pair batch, pair by pair (c_0, r_0, c_1, r_1, ...) → chosen first, as the
    plain layouts order them (c_0, ..., c_{B-1}, r_0, ..., r_{B-1})."""
    return values.view(-1, 2).t().reshape(-1)


class PrefixSharingMixin:
    """`share_prefix`: the key, unless `check_prefix_sharing` found that the model cannot take the shared layout."""

    config: Any
    _sharing_problem: str | None = None

    @property
    def share_prefix(self) -> bool:
        return bool(getattr(self.config, "prefix_sharing", False)) and self._sharing_problem is None

    def check_prefix_sharing(self, body: nn.Module | None) -> bool:
        """Probe `body` (the decoder the batches go through; None: the model exposes none) once; print a one-line
        notice and use the plain layout from now on when it cannot run shared batches exactly. Returns
        `share_prefix`."""
        if not getattr(self.config, "prefix_sharing", False):
            return False
        problem = body_sharing_problem(body, max_length=self.config.max_length)
        if problem is not None:
            self.prefix_sharing_off(problem)
        return self.share_prefix

    def prefix_sharing_off(self, problem: str) -> None:
        """Use the plain layout from now on, saying why in one line."""
        console.print(fallback_notice(problem), soft_wrap=True, markup=False, highlight=False)
        self._sharing_problem = problem
