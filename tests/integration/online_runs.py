"""The small online run the multi-process and Ray checks compare: 16 arithmetic prompts, a reward for the share of
letters in a response (a dense signal a tiny random model moves), 4 prompts × 2 samples a round."""

from __future__ import annotations

from pathlib import Path

LETTERS = ("def letters(completions, **_):\n"
           "    return [sum(c.isalpha() for c in t) / max(len(t), 1) for t in completions]\n")


def online_flags(command: str, model_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    """`bridle <command>` on that run, 4 steps of one micro-batch each (2 rounds when a round has 2 updates);
    `extra` adds or overrides flags."""
    from bridle.data.arithmetic import write_arithmetic

    prompts = write_arithmetic(tmp_path / "arithmetic.jsonl", 16, seed=1)
    reward = tmp_path / "letters.py"
    reward.write_text(LETTERS)
    return [command, "--model", str(model_dir), "--data", str(prompts), "--max-new-tokens", "6", "--lr", "3e-3",
            "--log-every", "1", "--seed", "0", "--no-progress", "--reward", f"{reward}:letters", "--max-steps", "4",
            "--prompts-per-rollout", "4", "--num-samples", "2", "--grad-accum", "1", "--temperature", "0.9",
            "--top-k", "50", *extra]
