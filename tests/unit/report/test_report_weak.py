"""The honest-weakness rules, each on a hand-made report where it must fire and one where it must not."""

from __future__ import annotations

from typing import Any

from bridle.report.headline import headlines, later_view
from bridle.report.weak import eval_weaknesses, pair_weaknesses, stage_weaknesses

KL_SAMPLED = "KL(model ‖ reference), k1 estimate: answers sampled at temperature 1"


def pair(**changes: Any) -> dict[str, Any]:
    """A pair with nothing weak about it: 200 prompts, a clear win, a consistent judge."""
    return {"model_a": "base", "model_b": "tuned", "prompts": 200, "judged": 200, "unparsed": 0, "win_rate": 0.30,
            "win_rate_interval": [0.24, 0.36], "tie_rate": 0.1, "position_inconsistency_rate": 0.1,
            "lc_win_rate": 0.32, "lc_win_rate_interval": [0.25, 0.39], **changes}


def report(pairs: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    models = {"base": {"length_chars": {"mean": 100.0}, "reward": {"mean": 0.1, "interval": [0.0, 0.2]},
                       "kl_to_reference": {"mean": 0.0, "interval": [0, 0], "estimator": KL_SAMPLED}},
              "tuned": {"length_chars": {"mean": 110.0}, "reward": {"mean": 0.5, "interval": [0.4, 0.6]},
                        "kl_to_reference": {"mean": 2.5, "interval": [2.0, 3.0], "estimator": KL_SAMPLED}}}
    return {"prompts": 200, "models": models, "pairs": pairs if pairs is not None else [pair()], **changes}


def test_a_clear_consistent_result_has_no_weakness():
    assert eval_weaknesses(report()) == []


def test_interval_including_half_says_no_measurable_difference():
    found = eval_weaknesses(report([pair(win_rate=0.45, win_rate_interval=[0.38, 0.52])]))
    assert len(found) == 1 and "includes 50%: no measurable difference" in found[0] and "base vs tuned" in found[0]
    assert eval_weaknesses(report([pair(win_rate=0.45, win_rate_interval=[0.38, 0.49])])) == []


def test_missing_interval_or_verdicts_is_said():
    assert "no interval" in eval_weaknesses(report([pair(win_rate_interval=[None, None])]))[0]
    assert "no verdict was read" in eval_weaknesses(report([pair(win_rate=None, judged=0)]))[0]


def test_position_inconsistency_above_three_tenths_says_the_judge_depends_on_order():
    found = eval_weaknesses(report([pair(position_inconsistency_rate=0.31)]))
    assert len(found) == 1 and "verdicts depend on order" in found[0] and "31%" in found[0]
    assert eval_weaknesses(report([pair(position_inconsistency_rate=0.3)])) == []
    assert eval_weaknesses(report([pair(position_inconsistency_rate=None)])) == []  # a one-order judge


def test_fewer_than_fifty_prompts_is_few():
    found = eval_weaknesses(report(prompts=49))
    assert len(found) == 1 and found[0].startswith("few prompts (49") and "2.0 points" in found[0]
    assert eval_weaknesses(report(prompts=50)) == []


def test_more_than_a_tenth_unparsed_is_said():
    found = eval_weaknesses(report([pair(unparsed=21, judged=179)]))
    assert len(found) == 1 and "21 of 200 verdicts (10%) were unreadable" in found[0]
    assert eval_weaknesses(report([pair(unparsed=20, judged=180)])) == []


def test_reward_up_but_judge_prefers_the_other_is_possible_reward_hacking():
    # tuned has the higher mean reward (0.5 vs 0.1); base's win rate 0.7 means the judge prefers base
    found = eval_weaknesses(report([pair(win_rate=0.7, win_rate_interval=[0.64, 0.76], lc_win_rate=0.7)]))
    assert len(found) == 1 and found[0].startswith("possible reward hacking: tuned gets the higher reward")
    assert "judge prefers base (70% of verdicts)" in found[0]
    # the other orientation: base is the one the reward model likes, and the judge prefers tuned
    flipped = report()
    flipped["models"]["base"]["reward"]["mean"] = 0.9
    found = eval_weaknesses(flipped)
    assert len(found) == 1 and "base gets the higher reward (0.900 vs 0.500)" in found[0]
    assert "judge prefers tuned (70% of verdicts)" in found[0]


def test_mostly_ties_and_length_controlled_disagreement_are_said():
    found = pair_weaknesses(pair(tie_rate=0.6), {})
    assert len(found) == 1 and "60% of verdicts are ties" in found[0]
    found = pair_weaknesses(pair(lc_win_rate=0.55), {})
    assert len(found) == 1 and "length-controlled win rate (55%) points the other way" in found[0]


def test_checks_with_few_answers_or_overlapping_intervals_are_said():
    checks = {"exact": {"base": {"rate": 0.3, "interval": [0.2, 0.4], "n": 200},
                        "tuned": {"rate": 0.45, "interval": [0.38, 0.52], "n": 200}}}
    found = eval_weaknesses(report(checks=checks))
    assert len(found) == 1 and "intervals of base [20%, 40%] and tuned [38%, 52%] overlap" in found[0]
    checks["exact"]["tuned"].update(interval=[0.41, 0.5], n=30)
    found = eval_weaknesses(report(checks=checks))
    assert found == ["check exact: few answers checked: tuned (30)."]


def test_greedy_log_ratio_and_negative_kl_are_not_passed_off_as_kl():
    greedy = report()
    greedy["models"]["tuned"]["kl_to_reference"].update(
        mean=-0.2, estimator="mean log-ratio of the model's answers (temperature 0.0: not samples of the model, "
                             "so not a KL estimate)")
    found = eval_weaknesses(greedy)
    assert len(found) == 2 and "not an estimate of KL" in found[0] and "below 0 for tuned" in found[1]


def test_reward_model_win_rate_interval_including_half_is_said():
    rm_pair = pair(win_rate=0.5, win_rate_interval=[0.45, 0.55])
    found = eval_weaknesses(report(), [rm_pair])
    assert found == ["base vs tuned by reward model: win rate 50% with 95% interval [45%, 55%], which includes 50%: "
                     "no measurable difference between the two."]


def test_failed_or_stopped_stage_is_a_caveat():
    assert "stopped by kl-guard" in stage_weaknesses("ppo", "stopped", "kl-guard")[0]
    assert stage_weaknesses("ppo", "failed", None)[0].startswith("stage ppo failed")
    assert stage_weaknesses("ppo", "done", None) == []


def test_headline_speaks_for_the_later_model_with_mirrored_interval():
    view = later_view(pair())
    assert view["model"] == "tuned" and abs(view["win_rate"] - 0.7) < 1e-9
    assert [round(x, 6) for x in view["interval"]] == [0.64, 0.76]
    lines = headlines({**report(), "judge": "local", "checks": {"exact": {"base": {"rate": 0.25},
                                                                           "tuned": {"rate": 0.5}}}})
    assert lines[0] == ("Judge local, 200 verdicts: tuned won 70% against base (95% interval [64%, 76%]; ties "
                        "count half).")
    assert "Check exact: base 25% → tuned 50%." in lines
    assert "KL to the reference: base 0.000, tuned 2.500." in lines
    assert "Mean answer length: base 100 → tuned 110 characters." in lines
