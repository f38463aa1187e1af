"""A reward model from `bridle rm` scores the same in Bridle, in transformers, in TRL and in peft.

The rows under test end in EOS, which for the tiny tokenizer (as for SmolLM2) is also the pad token: transformers
reads the score at the last token that is not the pad id, so Bridle must too (it used to read the final EOS, and its
scores then differed from `AutoModelForSequenceClassification`'s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from bridle import objectives
from bridle.cli.main import main
from bridle.data import TokenizedPair
from bridle.data.tokenize import TokenizedExample
from bridle.feedback import RewardModel
from bridle.methods.rm import RewardModelling, RMConfig
from bridle.models import tiny_tokenizer
from bridle.models.reward import reward_scores, score_sequences

PAD = 2  # the tiny tokenizer's pad, which is also its EOS
PAIRS = [("Say hi.", "Sure, hi there!", "No."), ("Name a fruit.", "Sure, an apple.", "Go away."),
         ("What is 2+2?", "Sure, it is 4.", "No.")]


def eos_rows() -> list[list[int]]:
    """chosen, rejected, chosen, ... as TRL tokenizes text pairs: prompt + response + EOS. The last rejected row
    ends in two EOS tokens (transformers skips both); the row lengths differ, so batches have padding."""
    tokenizer = tiny_tokenizer()
    rows = [tokenizer(p + " " + side, add_special_tokens=False).input_ids + [PAD] for p, c, r in PAIRS
            for side in (c, r)]
    rows[-1].append(PAD)
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == PAD and all(row[-1] == PAD for row in rows)
    return rows


ROWS = eos_rows()


@pytest.fixture(scope="module")
def rm_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`bridle rm` output dirs: full weights, a LoRA adapter, and LoRA merged (2 steps each, lr high enough that
    adapter and head move away from their initial values)."""
    tmp = tmp_path_factory.mktemp("rm_export")
    data = tmp / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in PAIRS * 2))
    lora = ["--lora", "--lora-r", "4"]
    dirs = {}
    for name, extra in (("full", []), ("lora", lora), ("merged", [*lora, "--merge-lora"])):
        assert main(["rm", "--model", str(tiny_model_dir), "--data", str(data), "--output-dir", str(tmp / name),
                     "--max-length", "256", "--batch-size", "2", "--max-steps", "2", "--lr", "1e-2",
                     "--eval-fraction", "0", "--no-progress", "--seed", "0", *extra]) == 0
        dirs[name] = tmp / name / "model"
    return dirs


def right_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right padding with the pad id, as TRL's DataCollatorForPreference and Bridle's collators pad."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
    return ids, mask


def bridle_scores(rm: RewardModel, rows: list[list[int]]) -> torch.Tensor:
    """What `bridle score` / `eval-rm` / `best-of-n` compute for these tokens (batches of 4, in length order)."""
    examples = [TokenizedExample(input_ids=row, labels=row) for row in rows]
    return torch.tensor(rm.score_encoded(examples, batch_size=4))


@pytest.mark.parametrize("kind", ["full", "merged"])
@torch.no_grad()
def test_saved_dir_scores_like_transformers_on_rows_ending_in_eos(rm_dirs, kind):
    hf = AutoModelForSequenceClassification.from_pretrained(rm_dirs[kind]).eval()
    assert hf.config.num_labels == 1 and hf.config.pad_token_id == PAD
    bridle = bridle_scores(RewardModel.load(rm_dirs[kind]), ROWS)
    alone = torch.cat([hf(input_ids=torch.tensor([row])).logits.squeeze(-1) for row in ROWS])
    torch.testing.assert_close(bridle, alone, rtol=0, atol=1e-5)
    ids, mask = right_padded(ROWS)
    torch.testing.assert_close(hf(input_ids=ids, attention_mask=mask).logits.squeeze(-1), bridle, rtol=0, atol=1e-5)


@torch.no_grad()
def test_trl_reward_trainer_computes_bridles_scores(rm_dirs, tmp_path):
    pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    chosen, rejected = ROWS[0::2], ROWS[1::2]
    examples = [{"chosen_ids": c, "rejected_ids": r} for c, r in zip(chosen, rejected)]  # TRL's tokenized columns
    model = AutoModelForSequenceClassification.from_pretrained(rm_dirs["full"])
    tokenizer = AutoTokenizer.from_pretrained(rm_dirs["full"])
    args = RewardConfig(output_dir=str(tmp_path / "trl"), report_to="none", per_device_train_batch_size=len(chosen),
                        use_cpu=True)
    trainer = RewardTrainer(model=model, args=args, processing_class=tokenizer,
                            train_dataset=datasets.Dataset.from_list(examples))
    batch = trainer.data_collator(examples)  # TRL's padding: right, with the pad id; chosen rows, then rejected
    trainer.model.eval()
    loss, outputs = trainer.compute_loss(trainer.model, batch, return_outputs=True)
    bridle = bridle_scores(RewardModel.load(rm_dirs["full"]), chosen + rejected)
    torch.testing.assert_close(outputs.logits.squeeze(-1), bridle, rtol=0, atol=1e-5)
    want, _ = objectives.bradley_terry(bridle[:len(chosen)], bridle[len(chosen):])
    torch.testing.assert_close(loss, want, rtol=0, atol=1e-5)


@torch.no_grad()
def test_lora_dir_loads_with_auto_peft_model_and_no_arguments(rm_dirs, tmp_path, monkeypatch):
    from peft import AutoPeftModelForSequenceClassification

    adapter = rm_dirs["lora"]
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "config.json").exists()
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a relative base path would not resolve from here
    peft_model = AutoPeftModelForSequenceClassification.from_pretrained(str(adapter)).eval()
    bridle = bridle_scores(RewardModel.load(adapter), ROWS)  # Bridle's own loader keeps reading the dir
    alone = torch.cat([peft_model(input_ids=torch.tensor([row])).logits.squeeze(-1) for row in ROWS])
    torch.testing.assert_close(alone, bridle, rtol=0, atol=1e-5)
    ids, mask = right_padded(ROWS)
    torch.testing.assert_close(peft_model(input_ids=ids, attention_mask=mask).logits.squeeze(-1), bridle, rtol=0,
                               atol=1e-5)
    merged = bridle_scores(RewardModel.load(rm_dirs["merged"]), ROWS)  # same seed and steps: the same model
    torch.testing.assert_close(merged, bridle, rtol=0, atol=1e-4)


@torch.no_grad()
def test_packed_and_padded_rm_steps_score_rows_ending_in_eos_like_transformers(rm_dirs, tiny_model_dir):
    rm = RewardModel.load(rm_dirs["full"])
    hf = AutoModelForSequenceClassification.from_pretrained(rm_dirs["full"]).eval()
    pairs = [TokenizedPair(TokenizedExample(input_ids=c, labels=c), TokenizedExample(input_ids=r, labels=r))
             for c, r in zip(ROWS[0::2], ROWS[1::2])]
    method = RewardModelling(RMConfig(model=str(tiny_model_dir), padding_free=True, center_coef=0.01,
                                      prefix_sharing=False), tokenizer=rm.tokenizer)
    packed = method.collate(pairs)  # what `bridle rm --padding-free --no-prefix-sharing` trains on
    packed_loss = method.step(rm.model, packed).loss
    method.config.padding_free = False
    padded = method.collate(pairs)  # what `bridle rm --no-prefix-sharing` trains on
    padded_loss = method.step(rm.model, padded).loss
    method.config.prefix_sharing = True
    shared_loss = method.step(rm.model, method.collate(pairs)).loss  # what `bridle rm` trains on
    hf_scores = hf(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits.squeeze(-1)
    want, _ = objectives.bradley_terry(hf_scores[:len(pairs)], hf_scores[len(pairs):], center_coef=0.01)
    torch.testing.assert_close(packed_loss, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(padded_loss, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(shared_loss, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(reward_scores(rm.model, padded["input_ids"], padded["attention_mask"]), hf_scores,
                               rtol=0, atol=1e-5)
    chosen_then_rejected = ROWS[0::2] + ROWS[1::2]
    torch.testing.assert_close(torch.tensor(score_sequences(rm.model, chosen_then_rejected, pad_id=PAD)),
                               hf_scores, rtol=0, atol=1e-5)
