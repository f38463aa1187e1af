"""The export rule: majority label per pair, ties / both-bad / split give no preference row, too few votes and gold
pairs are left out; rows read as preference data; verdicts give human win rates."""

from __future__ import annotations

import json

import pytest
from label_helpers import cast, simple_pairs

from bridle.data import detect_kind, load_rows, normalize
from bridle.label.candidates import Pair
from bridle.label.export import export, human_win_rates, majority


@pytest.mark.parametrize("counts, label", [
    ({"a": 2, "b": 1}, "a"), ({"b": 2, "tie": 1}, "b"), ({"a": 1, "b": 1}, "split"), ({"tie": 2, "a": 1}, "tie"),
    ({"both_bad": 2, "a": 1}, "both_bad"), ({"a": 1, "tie": 1, "both_bad": 1}, "split"), ({}, "split"),
])
def test_majority_is_a_strict_plurality(counts, label):
    assert majority({c: counts.get(c, 0) for c in ("a", "b", "tie", "both_bad")}) == label


@pytest.fixture
def voted(make_db):
    _, conn = make_db(simple_pairs(7), simple_pairs(1, gold="a", start=7), k=3)
    cast(conn, {1: ["a", "a", "b"], 3: ["tie", "tie", "a"], 4: ["both_bad", "both_bad", "a"], 5: ["a", "b", "tie"],
                6: ["a", "a"], 7: ["a", "a", "a"], 8: ["a", "a", "a"]}, unsafe={7})
    cast(conn, {2: ["b", "b", "tie"]}, swapped=True)  # clicked on swapped sides, stored in the pair's order
    return conn


def test_preferences_follow_the_stated_rule(voted, tmp_path):
    out = tmp_path / "prefs.jsonl"
    summary = export(voted, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["pair_id"] for r in rows] == [1, 2, 7]
    one, two, seven = rows
    assert (one["chosen"], one["rejected"]) == ("answer 0 a", "answer 0 b")
    assert (two["chosen"], two["rejected"]) == ("answer 1 b", "answer 1 a")
    assert one["votes"] == {"a": 2, "b": 1, "tie": 0, "both_bad": 0} and one["n_votes"] == 3
    assert one["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert seven["unsafe_flags"] == 3 and seven["comments"] == ["looks risky"] * 3
    assert dict(summary.labels) == {"a": 2, "b": 1, "tie": 1, "both_bad": 1, "split": 1}
    assert (summary.rows, summary.too_few_votes, summary.gold_pairs) == (3, 1, 1)


def test_min_votes_and_exclude_unsafe(voted, tmp_path):
    out = tmp_path / "prefs.jsonl"
    export(voted, out, min_votes=2, exclude_unsafe=True)
    assert [json.loads(line)["pair_id"] for line in out.read_text().splitlines()] == [1, 2, 6]


def test_exported_rows_are_preference_data_as_they_are(voted, tmp_path):
    out = tmp_path / "prefs.jsonl"
    export(voted, out)
    raws = load_rows(out)
    assert all(detect_kind(r.value) == "preference" for r in raws)
    records, bad = normalize(raws, "preference")
    assert len(records) == 3 and bad.total() == 0
    assert records[1]["chosen"] == "answer 1 b"


def test_verdicts_map_labels_to_winners(voted, tmp_path):
    out = tmp_path / "verdicts.jsonl"
    summary = export(voted, out, fmt="verdicts")
    rows = {r["pair_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(rows) == [1, 2, 3, 4, 5, 7]
    assert [(rows[i]["winner"], rows[i]["outcome"]) for i in (1, 2, 3, 4, 5)] == [
        ("A", 1.0), ("B", 0.0), ("tie", 0.5), ("tie", 0.5), ("tie", 0.5)]
    assert rows[4]["label"] == "both_bad" and rows[5]["label"] == "split" and rows[1]["judge"] == "human"
    assert summary.rows == 6


def test_human_win_rates_orient_every_verdict_to_one_model(make_db, tmp_path):
    pairs = [Pair(f"q{i}", f"x{i}", f"y{i}", "gen.jsonl", i + 1, *models, prompt_index=i)
             for i, models in enumerate([("base", "tuned"), ("tuned", "base"), ("tuned", "base"), ("base", "tuned")])]
    _, conn = make_db(pairs, k=1)
    cast(conn, {1: ["b"], 2: ["a"], 3: ["a"], 4: ["tie"]})  # tuned wins 3, one tie
    summary = export(conn, tmp_path / "v.jsonl", fmt="verdicts")
    [rate] = summary.win_rates
    assert (rate["model_a"], rate["model_b"], rate["wins"], rate["ties"], rate["losses"]) == ("base", "tuned", 0, 1, 3)
    assert rate["win_rate"] == pytest.approx(0.5 / 4)
    assert "human win rate base vs tuned: 12.5%" in summary.text("v.jsonl", "verdicts")
    [flipped] = human_win_rates([json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()],
                                order=[("tuned", "base")])
    assert (flipped["model_a"], flipped["wins"], flipped["win_rate"]) == ("tuned", 3, pytest.approx(3.5 / 4))
    assert human_win_rates([]) == []
