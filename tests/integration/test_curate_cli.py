"""`bridle curate` end to end: a mixed pool (Alpaca, Self-Instruct, chat) curated and trained on by `bridle sft` as it
is; reward-model, rule and local-judge scores; token bounds; scores reused on a rerun; errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from bridle.cli.main import main
from bridle.data import load_sft_dataset
from bridle.data.chat import set_chat_template
from bridle.feedback import RewardModel
from bridle.feedback.curate import Options
from bridle.models.tiny import tiny_causal_lm, tiny_tokenizer

ALPACA = [{"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, move."},
          {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
          {"instruction": "What are the three primary colors?", "input": "", "output": "Red, blue and yellow."},
          {"instruction": "Give three tips for staying healthy today.", "input": "", "output": "Walk daily."}]
SELF_INSTRUCT = [{"id": "seed_task_0", "instruction": "Sort the numbers in ascending order.",
                  "instances": [{"input": "3, 1, 2", "output": "1, 2, 3"}, {"input": "9, 7", "output": "7, 9"}]},
                 {"id": "seed_task_1", "instruction": "Suggest a name for a pet turtle.",
                  "instances": [{"input": "", "output": "Shelly, because turtles carry their shells."}]}]
CHAT = [{"messages": [{"role": "user", "content": "Write a haiku about autumn leaves falling."},
                      {"role": "assistant", "content": "Red leaves drift and fall / the wind hums an old song / "
                                                       "branches wait for snow"}]}]
RULES = ("def vowels(prompts, completions, **_):\n"
         "    return [float(sum(ch in 'aeiou' for ch in c)) for c in completions]\n")


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def pool(tmp_path: Path) -> list[str]:
    return [write_jsonl(tmp_path / "alpaca.jsonl", ALPACA), write_jsonl(tmp_path / "seed.jsonl", SELF_INSTRUCT),
            write_jsonl(tmp_path / "chat.jsonl", CHAT)]


def data_flags(pool: list[str]) -> list[str]:
    return [flag for path in pool for flag in ("--data", path)]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_curate_a_mixed_pool_then_sft_trains_on_the_subset_unchanged(pool, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "curated"
    assert main(["curate", *data_flags(pool), "--size", "6", "--min-answer-chars", "5", "--output-dir", str(out),
                 "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["pool"] == 8 and report["kept"] == 6
    assert report["counts"] == {"kept": 6, "answer too short": 1, "near duplicate": 1}
    assert next(r for r in report["rows"] if r["reason"] == "answer too short")["id"] == f"{pool[1]}:1[1]"  # "7, 9"
    # the two "staying healthy" prompts share 4 of 5 trigrams: the shorter answer goes (score: answer length)
    duplicate = next(r for r in report["rows"] if r["reason"] == "near duplicate")
    assert duplicate["id"] == f"{pool[0]}:4" and duplicate["duplicate_of"] == f"{pool[0]}:1"
    assert "kept 6 of 8 examples" in capsys.readouterr().out
    subset = out / "curated.jsonl"
    examples, data_report = load_sft_dataset(str(subset), tiny_tokenizer(), max_length=256)
    assert len(examples) == data_report.kept == 6 and data_report.bad.total() == 0
    inputs = {path: rows for path, rows in zip(pool, (ALPACA, SELF_INSTRUCT, CHAT))}
    want = []  # each kept example's input row, in input order; a Self-Instruct row with only its kept instances
    for r in report["rows"]:
        row = inputs[r["source"]][r["row"] - 1]
        if r["kept"] and r["instance"] is None:
            want.append(row)
        elif r["kept"]:
            if want and want[-1].get("id") == row["id"]:
                want[-1]["instances"].append(row["instances"][r["instance"]])
            else:
                want.append({**row, "instances": [row["instances"][r["instance"]]]})
    assert lines(subset) == want and want[3]["instances"] == [SELF_INSTRUCT[0]["instances"][0]]  # 1 of its 2
    run = tmp_path / "sft"
    assert main(["sft", "--model", str(tiny_model_dir), "--data", str(subset), "--output-dir", str(run),
                 "--max-steps", "2", "--batch-size", "2", "--max-length", "256", "--no-progress"]) == 0
    assert (run / "model" / "config.json").is_file()


def test_reward_model_scores_pick_the_best_rewarded(pool, tmp_path):
    torch.manual_seed(0)  # a 1-label classifier on the tiny Llama: a reward model with random weights
    config = tiny_causal_lm(seed=4).config
    config.num_labels, config.pad_token_id = 1, 2
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "rm")
    tiny_tokenizer().save_pretrained(tmp_path / "rm")
    out = tmp_path / "out"
    assert main(["curate", *data_flags(pool), "--size", "3", "--clusters", "1", "--no-dedup", "--score",
                 f"rm:{tmp_path / 'rm'}", "--output-dir", str(out), "--no-progress"]) == 0
    rows = json.loads((out / "report.json").read_text())["rows"]
    model = RewardModel.load(tmp_path / "rm")
    prompts = ["Give three tips for staying healthy.", "Translate to French.\n\nGood morning"]
    want = model.score(prompts, [ALPACA[0]["output"], ALPACA[1]["output"]])
    assert [r["score"] for r in rows[:2]] == pytest.approx(want, abs=1e-5)
    best = sorted(rows, key=lambda r: -r["score"])[:3]
    assert {r["id"] for r in rows if r["kept"]} == {r["id"] for r in best}
    assert len(lines(out / "scores.jsonl")) == 8


def test_rule_scores_are_journaled_and_reused_on_a_rerun(pool, tmp_path):
    (tmp_path / "rules.py").write_text(RULES)
    flags = ["curate", *data_flags(pool), "--size", "2", "--clusters", "1", "--score",
             f"rule:{tmp_path / 'rules.py'}:vowels", "--output-dir", str(tmp_path / "out"), "--no-progress"]
    assert main(flags) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    vowels = {r["id"]: r["score"] for r in report["rows"]}
    # lower-case vowels counted by hand: the haiku 19, the turtle name 11, the rest 6 or fewer
    assert vowels[f"{pool[2]}:1"] == 19.0 and vowels[f"{pool[1]}:2"] == 11.0
    assert {r["id"] for r in report["rows"] if r["kept"]} == {f"{pool[2]}:1", f"{pool[1]}:2"}
    assert (report["score"]["computed"], report["score"]["resumed"]) == (8, 0)
    assert main(flags) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["score"]["computed"] == 0
    assert main(flags + ["--rescore"]) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["score"]["computed"] == 8


def test_local_judge_grades_and_unreadable_grades_are_counted(pool, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["curate", *data_flags(pool), "--size", "2", "--score", f"judge:local:{tiny_model_dir}",
                 "--output-dir", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    journal = lines(out / "scores.jsonl")
    assert len(journal) == 8 and all(r["raw"].startswith("Rating: [[") for r in journal)  # a prefilled local judge
    unreadable = sum(r["score"] is None for r in journal)
    assert report["score"]["unparsed"] == unreadable == report["counts"].get("unscored", 0)


def test_token_bounds_count_with_the_tokenizer(pool, tiny_model_dir, tmp_path):
    # the tiny tokenizer is byte-level: an ASCII text has as many tokens as characters
    out = tmp_path / "out"
    assert main(["curate", *data_flags(pool), "--size", "8", "--max-answer-tokens", "10", "--tokenizer",
                 str(tiny_model_dir), "--output-dir", str(out), "--no-progress"]) == 0
    rows = json.loads((out / "report.json").read_text())["rows"]
    long = {r["id"] for r in rows if r["answer_chars"] > 10}
    assert {r["id"] for r in rows if r["reason"] == "answer too long"} == long and len(long) == 5
    assert all(r["detail"].endswith("tokens, above --max-answer-tokens 10") for r in rows if r["id"] in long)


@pytest.mark.parametrize(("template", "limit"), [("auto", 155), ("alpaca", 199)])
def test_max_tokens_counts_the_example_as_sft_does_so_nothing_kept_is_truncated(pool, tiny_model_dir, tmp_path,
                                                                                template, limit):
    # with the tiny byte-level tokenizer the 8 examples are 157, 140, 154, 152, 151, 145, 174, 219 tokens (auto
    # template, its system turn included) and 44 more each with the alpaca template: 3 of them are over the limit
    out = tmp_path / "out"
    assert main(["curate", *data_flags(pool), "--size", "8", "--no-dedup", "--max-tokens", str(limit), "--tokenizer",
                 str(tiny_model_dir), "--chat-template", template, "--output-dir", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    tokenizer = tiny_tokenizer()
    set_chat_template(tokenizer, template)
    truncated = sum(e.truncated for path in pool for e in load_sft_dataset(path, tokenizer, max_length=limit)[0])
    assert report["counts"]["too many tokens"] == truncated == 3 and report["kept"] == 5
    kept, data_report = load_sft_dataset(str(out / "curated.jsonl"), tokenizer, max_length=limit)
    assert len(kept) == 5 and data_report.truncated == 0


def test_errors_name_what_to_change(pool, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["curate", *data_flags(pool), "--size", "2", "--score", "bogus", "--output-dir", out]) == 2
    assert "--score is one of" in capsys.readouterr().err
    assert main(["curate", "--data", str(tmp_path / "missing.jsonl"), "--size", "2", "--output-dir", out]) == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err
    assert main(["curate", *data_flags(pool), "--size", "2", "--dedup-treshold", "0.5", "--output-dir", out]) == 2
    assert "Did you mean --dedup-threshold?" in capsys.readouterr().err


def test_every_flag_reaches_the_pipeline(pool, monkeypatch):
    seen = {}

    def capture(inputs, output_dir, options, **kwargs):
        seen.update(inputs=inputs, output_dir=output_dir, options=options, **kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("bridle.feedback.curate.curate_files", capture)
    bounds = {name: 11 + k for k, name in enumerate(("min_prompt_chars", "max_prompt_chars", "min_answer_chars",
                                                     "max_answer_chars", "min_answer_tokens", "max_answer_tokens",
                                                     "max_tokens"))}
    flags = [f for name, value in bounds.items() for f in ("--" + name.replace("_", "-"), str(value))]
    with pytest.raises(SystemExit):
        main(["curate", *data_flags(pool), "--size", "7", "--output-dir", "o", "--score", "none", *flags,
              "--tokenizer", "tok", "--chat-template", "chatml", "--dedup-threshold", "0.5", "--shingle-size", "2",
              "--clusters", "3", "--seed", "9", "--batch-size", "5", "--on-bad-row", "skip", "--rescore",
              "--no-progress"])
    assert seen["options"] == Options(size=7, bounds=bounds, dedup_threshold=0.5, shingle_size=2, clusters=3,
                                      seed=9)
    assert (seen["inputs"], seen["output_dir"]) == (pool, "o")
    assert {k: seen[k] for k in ("score", "tokenizer", "chat_template", "batch_size", "on_bad_row", "rescore",
                                 "progress")} == {"score": "none", "tokenizer": "tok", "chat_template": "chatml",
                                                  "batch_size": 5, "on_bad_row": "skip", "rescore": True,
                                                  "progress": False}
    with pytest.raises(SystemExit):
        main(["curate", *data_flags(pool), "--size", "7", "--output-dir", "o", "--no-dedup"])
    assert seen["options"].dedup_threshold is None and seen["score"] == "length" and seen["progress"] is True
