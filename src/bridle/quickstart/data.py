"""The quickstart's data, written by the project: questions with a clear, checkable preference.

The preference: **answer in one short sentence**. Each question has a short answer (one sentence, the fact) and a
long one (the same fact padded with pleasantries and filler), so SFT learns from the short answers, a reward model
and DPO learn from (short ≻ long) pairs, and `one_short_sentence` checks any answer without a judge. Facts are
split into training and held-out questions by a seeded shuffle: the evaluation never sees a training question.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"),
            ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"),
            ("Greece", "Athens"), ("Poland", "Warsaw"), ("Portugal", "Lisbon"), ("Ireland", "Dublin"),
            ("Austria", "Vienna"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Chile", "Santiago"),
            ("Argentina", "Buenos Aires"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Cuba", "Havana"),
            ("Turkey", "Ankara"), ("Australia", "Canberra"), ("India", "New Delhi"), ("China", "Beijing"),
            ("Russia", "Moscow"), ("Mexico", "Mexico City"), ("Brazil", "Brasília"), ("Denmark", "Copenhagen")]
OPPOSITES = [("hot", "cold"), ("up", "down"), ("big", "small"), ("fast", "slow"), ("light", "dark"),
             ("happy", "sad"), ("early", "late"), ("open", "closed"), ("full", "empty"), ("strong", "weak"),
             ("high", "low"), ("wet", "dry"), ("old", "new"), ("hard", "soft"), ("rich", "poor"),
             ("near", "far"), ("loud", "quiet"), ("thick", "thin"), ("clean", "dirty"), ("first", "last")]
COLORS = [("banana", "yellow"), ("grass", "green"), ("snow", "white"), ("coal", "black"), ("a ripe tomato", "red"),
          ("the clear daytime sky", "blue"), ("an orange", "orange"), ("a lemon", "yellow"), ("chocolate", "brown"),
          ("a flamingo", "pink")]
FILLERS = [
    ("Great question! I'd be happy to help you with that.",
     "This is something many people like to know, and it is a good fact to remember. I hope this helps, and let me "
     "know if you have any other questions!"),
    ("Thank you for asking. Let me explain this for you in detail.",
     "There is quite a lot more that could be said about this topic, so feel free to ask a follow-up question if "
     "you would like to learn more about it."),
    ("That's an interesting thing to wonder about! Here is what I know.",
     "It is always nice to learn something new. If anything is unclear, just tell me and I will explain it again "
     "in a different way."),
]


@dataclass(frozen=True)
class Item:
    """One question with its short (preferred) and long (dispreferred) answers."""

    topic: str
    prompt: str
    short: str
    long: str


def items(seed: int = 0) -> list[Item]:
    """Every question, in a fixed order; long answers take a filler chosen with `seed`."""
    rng = random.Random(seed)
    out = []

    def add(topic: str, prompt: str, short: str) -> None:
        before, after = FILLERS[rng.randrange(len(FILLERS))]
        out.append(Item(topic, prompt, short, f"{before} {short} {after}"))

    for country, capital in CAPITALS:
        add("capital", f"What is the capital of {country}?", f"The capital of {country} is {capital}.")
    for word, opposite in OPPOSITES:
        add("opposite", f"What is the opposite of \"{word}\"?", f"The opposite of \"{word}\" is \"{opposite}\".")
    for thing, color in COLORS:
        add("color", f"What color is {thing}?", f"{thing[0].upper()}{thing[1:]} is {color}.")
    pairs = random.Random(seed + 1).sample([(a, b) for a in range(2, 20) for b in range(2, 20) if a < b], 30)
    for a, b in pairs:
        add("sum", f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.")
    return out


def split(all_items: list[Item], held_out: int, seed: int = 0) -> tuple[list[Item], list[Item]]:
    """(training, held-out): a seeded shuffle, then the last `held_out` questions held out."""
    shuffled = list(all_items)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:-held_out], shuffled[-held_out:]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_data(folder: Path, *, held_out: int = 40, seed: int = 0) -> dict[str, Path]:
    """sft.jsonl (prompt, completion = the short answer), pairs.jsonl (prompt, chosen = short, rejected = long),
    prompts.jsonl (training prompts, for PPO) and held_out.jsonl (prompt, reference = the short answer)."""
    train, held = split(items(seed), held_out, seed)
    return {
        "sft": write_jsonl(folder / "sft.jsonl", [{"prompt": i.prompt, "completion": i.short} for i in train]),
        "pairs": write_jsonl(folder / "pairs.jsonl", [{"prompt": i.prompt, "chosen": i.short, "rejected": i.long}
                                                      for i in train]),
        "prompts": write_jsonl(folder / "prompts.jsonl", [{"prompt": i.prompt} for i in train]),
        "held_out": write_jsonl(folder / "held_out.jsonl", [{"prompt": i.prompt, "reference": i.short}
                                                            for i in held]),
    }
