"""Real check: RLAIF on the embedded SmolLM2-135M over real Alpaca prompts, DPO on the labels, and `bridle eval` of
the trained model against the starting one on held-out Self-Instruct prompts.

Two labelling runs over the same 16 prompts and the same candidates (the seed of prompt i depends on i alone):
1. the embedded model as its own local judge, both orders (Lee et al. 2023). The 135M judge is known to be near
   chance and to favour the answer shown first, so its pairs come out as position-inconsistent ties; the figures
   are printed, not hoped for.
2. a brevity rule as the judge (shorter wins), to show that the labels train: DPO on them should shorten the
   model's answers, which `bridle eval` with the same rule then measures as a win rate above ½.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bridle.cli.main import main

pytestmark = pytest.mark.slow

RULE = "def brevity(completions, **_):\n    return [-float(len(c)) for c in completions]\n"
SAMPLING = ["--k", "3", "--max-new-tokens", "48", "--temperature", "0.7", "--limit", "16", "--no-progress"]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def timed(label: str, argv: list[str]) -> None:
    start = time.perf_counter()
    assert main(argv) == 0, label
    print(f"[{label}: {time.perf_counter() - start:.0f} s]")


def split_generations(ev: Path, out: Path) -> dict[str, Path]:
    """generations.jsonl of `bridle eval` as one {prompt, output} file per model, for --generations."""
    files: dict[str, Path] = {}
    for row in jsonl(ev / "generations.jsonl"):
        files.setdefault(row["model"], out / f"{row['model']}.jsonl")
        with files[row["model"]].open("a") as handle:
            handle.write(json.dumps({"prompt": row["prompt"], "output": row["output"]}) + "\n")
    return files


def test_rlaif_labels_train_dpo_and_eval_measures_it(shared_data, tmp_path, capsys):
    alpaca = shared_data / "alpaca" / "alpaca_tiny_100.jsonl.gz"
    held_out = shared_data / "self-instruct" / "seed_tasks.jsonl.gz"
    rule = tmp_path / "rules.py"
    rule.write_text(RULE)

    local = tmp_path / "rlaif-local"
    timed("rlaif, local judge", ["rlaif", "--data", str(alpaca), "--policy", "smollm2-135m", "--judge", "local",
                                 "--output-dir", str(local), *SAMPLING])
    report = json.loads((local / "report.json").read_text())
    assert report["prompts"] == 16 and report["candidates"] == 48
    assert report["kept"] + report["ties"] + report["unparsed_pairs"] == report["pairs_judged"]
    assert report["pairs_judged"] + report["identical"] == 48
    print(f"local judge: {report['pairs_judged']} pairs judged, kept {report['kept']}, ties {report['ties']} "
          f"(orders disagreed {report['ties_inconsistent']}), unparsed {report['unparsed_pairs']}, position "
          f"consistency {report['position_consistency']}")
    timed("re-filter with --ties probability", ["rlaif", "--data", str(alpaca), "--policy", "smollm2-135m",
                                                 "--judge", "local", "--output-dir", str(local), "--ties",
                                                 "probability", *SAMPLING])
    broken = json.loads((local / "report.json").read_text())
    assert broken["resumed_prompts"] == 16  # nothing sampled or judged again
    print(f"  --ties probability: kept {broken['kept']}, mean probability {broken['mean_probability']}")

    brevity = tmp_path / "rlaif-rule"
    timed("rlaif, brevity rule", ["rlaif", "--data", str(alpaca), "--policy", "smollm2-135m", "--judge",
                                  f"rule:{rule}:brevity", "--output-dir", str(brevity), *SAMPLING])
    rule_report = json.loads((brevity / "report.json").read_text())
    same = [a["candidates"] == b["candidates"] for a, b in zip(jsonl(local / "judgements.jsonl"),
                                                                   jsonl(brevity / "judgements.jsonl"))]
    assert all(same) and len(same) == 16  # candidates depend on (seed, prompt index) only
    pairs = jsonl(brevity / "pairs.jsonl")
    assert len(pairs) == rule_report["kept"] >= 30 and all(len(p["chosen"]) < len(p["rejected"]) for p in pairs)
    print(f"brevity rule: kept {rule_report['kept']} of {rule_report['pairs_judged']}, ties {rule_report['ties']}")

    run = tmp_path / "dpo"
    timed("dpo", ["dpo", "--model", "smollm2-135m", "--data", str(brevity / "pairs.jsonl"), "--output-dir", str(run),
                  "--max-length", "192", "--batch-size", "4", "--grad-accum", "1", "--lr", "5e-5", "--max-steps", "8",
                  "--eval-fraction", "0", "--log-every", "4", "--no-progress"])
    train = [r for r in jsonl(run / "metrics.jsonl") if "loss" in r]
    assert train[-1]["step"] == 8
    print(f"dpo: loss {train[0]['loss']:.4f} -> {train[-1]['loss']:.4f}, reward/accuracy "
          f"{train[-1]['reward/accuracy']:.2f}")

    ev = tmp_path / "eval-local"
    timed("eval, local judge", ["eval", "--data", str(held_out), "--limit", "12", "--model", f"dpo={run / 'model'}",
                                "--model", "base=smollm2-135m", "--judge", "local", "--max-new-tokens", "48",
                                "--output-dir", str(ev), "--no-progress"])
    files = split_generations(ev, tmp_path)
    ev_rule = tmp_path / "eval-rule"
    timed("eval, brevity rule", ["eval", "--generations", f"dpo={files['dpo']}", "--generations",
                                 f"base={files['base']}", "--judge", f"rule:{rule}:brevity", "--output-dir",
                                 str(ev_rule), "--no-progress"])
    figures = {}
    for name, path in (("local judge", ev), ("brevity rule", ev_rule)):
        pair = json.loads((path / "report.json").read_text())["pairs"][0]
        figures[name] = pair
        print(f"eval dpo vs base, {name}: win rate {pair['win_rate']} {pair['win_rate_interval']} "
              f"(wins {pair['wins']}, ties {pair['ties']}, losses {pair['losses']}, unparsed {pair['unparsed']}), "
              f"position inconsistency {pair['position_inconsistency_rate']}")
    lengths = json.loads((ev / "report.json").read_text())["models"]
    print(f"mean answer length (chars): dpo {lengths['dpo']['length_chars']['mean']}, base "
          f"{lengths['base']['length_chars']['mean']}")
    assert figures["brevity rule"]["judged"] == 12
    assert figures["brevity rule"]["win_rate"] > 0.5  # the brevity labels moved the model towards shorter answers
