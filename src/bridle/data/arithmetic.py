"""Arithmetic word-free problems with exact answers: a verifiable-reward task the project writes itself, small
enough for a CPU (short prompts, short answers). Rows are {"prompt", "answer"} in GSM8K's answer style ("#### 42"),
so `math_exact_match` grades them like GSM8K."""

from __future__ import annotations

import json
import random
from pathlib import Path

OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def arithmetic_problems(n: int, *, seed: int = 0, low: int = 1, high: int = 20, ops: str = "+") -> list[dict[str, str]]:
    """`n` problems "What is a op b?" with a, b uniform in [low, high] and op drawn from `ops` (some of + - *)."""
    unknown = set(ops) - set(OPERATIONS)
    if unknown or not ops:
        raise ValueError(f"ops must be made of {''.join(OPERATIONS)}; got {ops!r}")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b, op = rng.randint(low, high), rng.randint(low, high), rng.choice(ops)
        rows.append({"prompt": f"What is {a} {op} {b}?", "answer": f"{a} {op} {b} = {OPERATIONS[op](a, b)}\n"
                                                                    f"#### {OPERATIONS[op](a, b)}"})
    return rows


def write_arithmetic(path: str | Path, n: int, **kwargs: int | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in arithmetic_problems(n, **kwargs)))  # type: ignore[arg-type]
    return path
