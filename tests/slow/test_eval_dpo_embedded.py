"""Is the DPO-trained embedded model better than the untrained one? `bridle eval` on 100 held-out hh-rlhf prompts,
judged by a reward model trained on other hh pairs and by the local 135M LLM judge, with the drift (sequence KL) to
the starting model; and `bridle judge-check` of the local judge on XSTest's human refusal labels.

Budget (CPU, 2 cores, idle): DPO ~8 min, RM ~8 min, answers 2 x 100 prompts ~5 min, judging ~4 min, judge-check ~2 min.
Run with `pytest -m slow tests/slow/test_eval_dpo_embedded.py -s`; the figures are printed and written to $OUT_DIR
(default: the test's tmp dir). Nothing here asserts that DPO won: the finding is the measurement. The test asserts
what must hold whatever the result: every pair judged or counted, intervals around their estimates, the KL of the
untrained model to itself zero and of the trained one positive.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path

import pytest

from bridle.cli.main import main

DPO_PAIRS, RM_PAIRS, PROMPTS = 160, 200, 100


def hh_split(shared: Path, out: Path) -> dict[str, Path]:
    """Disjoint seeded splits: harmless-base pairs for DPO and for the RM; eval prompts from the 1000-row hh sample
    whose prompt text is in neither training split."""
    with gzip.open(shared / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as f:
        pairs = [line for line in f if line.strip()]
    random.Random(0).shuffle(pairs)
    dpo, rm = pairs[:DPO_PAIRS], pairs[DPO_PAIRS:DPO_PAIRS + RM_PAIRS]
    seen = "".join(json.loads(x)["chosen"] for x in dpo + rm)
    with gzip.open(shared / "hh-rlhf" / "test_sample1000_prompt_chosen_rejected.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    random.Random(1).shuffle(rows)
    held = [r for r in rows if r["prompt"].split("Human:", 1)[-1].strip()[:200] not in seen][:PROMPTS]
    paths = {"dpo": out / "dpo.jsonl", "rm": out / "rm.jsonl", "prompts": out / "prompts.jsonl"}
    paths["dpo"].write_text("".join(dpo))
    paths["rm"].write_text("".join(rm))
    paths["prompts"].write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in held))
    return paths


@pytest.mark.slow
def test_eval_of_dpo_trained_vs_untrained_with_rm_and_local_judges(shared_data: Path, tmp_path: Path):
    out = Path(os.environ.get("OUT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    data = hh_split(shared_data, out)
    common = ["--model", "smollm2-135m", "--max-length", "256", "--epochs", "1", "--lora", "--merge-lora",
              "--no-progress", "--on-bad-row", "skip", "--seed", "0", "--log-every", "10"]
    assert main(["dpo", "--data", str(data["dpo"]), "--output-dir", str(out / "dpo"), "--batch-size", "8",
                 "--lr", "5e-5", "--beta", "0.1", "--lr-schedule", "constant", "--resume", "auto", *common]) == 0
    assert main(["rm", "--data", str(data["rm"]), "--output-dir", str(out / "rm"), "--batch-size", "4", "--lr", "1e-4",
                 "--lora-r", "16", "--resume", "auto", *common]) == 0
    base = ["eval", "--data", str(data["prompts"]), "--model", f"dpo={out / 'dpo' / 'model'}", "--model",
            "base=smollm2-135m", "--max-new-tokens", "96", "--temperature", "1.0", "--seed", "0",
            "--reward-model", str(out / "rm" / "model"), "--kl-reference", "smollm2-135m", "--no-progress"]
    reports = {}
    for judge, spec in (("rm", f"rm:{out / 'rm' / 'model'}"), ("local", "local")):
        assert main([*base, "--judge", spec, "--output-dir", str(out / f"eval-{judge}")]) == 0
        reports[judge] = json.loads((out / f"eval-{judge}" / "report.json").read_text())
    check = out / "judge-check.json"
    assert main(["judge-check", "--task", "refusal", "--judge", "local", "--limit", "100", "--seed", "0",
                 "--output", str(check)]) == 0
    agreement = json.loads(check.read_text())

    for judge, report in reports.items():
        pair = report["pairs"][0]
        print(f"\n[{judge} judge] dpo vs base on {pair['prompts']} prompts: win {pair['win_rate']:.3f} "
              f"{pair['win_rate_interval']}, ties {pair['tie_rate']:.3f}, LC win {pair['lc_win_rate']}, "
              f"inconsistent {pair['position_inconsistency_rate']}, unparsed {pair['unparsed']}")
        assert pair["judged"] + pair["unparsed"] == PROMPTS
        low, high = pair["win_rate_interval"]
        assert low <= pair["win_rate"] <= high
    models = reports["rm"]["models"]
    for name in ("dpo", "base"):
        m = models[name]
        print(f"{name}: reward {m['reward']['mean']:.3f} {m['reward']['interval']}, KL to base "
              f"{m['kl_to_reference']['mean']:.3f} {m['kl_to_reference']['interval']}, mean chars "
              f"{m['length_chars']['mean']:.0f}")
    assert models["base"]["kl_to_reference"]["mean"] == pytest.approx(0.0, abs=1e-4)
    assert models["dpo"]["kl_to_reference"]["mean"] > 0
    print(f"judge-check local on XSTest ({agreement['items']} items): accuracy {agreement['accuracy']:.3f} "
          f"{agreement['accuracy_ci95']}, kappa {agreement['kappa']:.3f} {agreement['kappa_ci95']}, AUROC "
          f"{agreement.get('auroc_p_refusal')}")
    (out / "summary.json").write_text(json.dumps({"reports": reports, "judge_check": agreement}, indent=1))
