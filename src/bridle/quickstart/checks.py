"""The quickstart's checkable preference as a rule: is the answer one short sentence?

`one_short_sentence` follows the reward-function convention of `bridle.feedback.verifiers` (TRL's: completions in,
one float each out), so it also works as `--judge rule:bridle.quickstart.checks:one_short_sentence` or a reward.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

MAX_WORDS = 20
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")  # with any closing quotes or brackets


def is_one_short_sentence(text: str, max_words: int = MAX_WORDS) -> bool:
    """At most `max_words` words, ending with . ! or ?, and no sentence end before the last one."""
    text = text.strip()
    words = text.split()
    if not words or len(words) > max_words:
        return False
    ends = list(_SENTENCE_END.finditer(text))
    return len(ends) == 1 and ends[0].end() == len(text)  # the one sentence end closes the text


def one_short_sentence(completions: Sequence[Any], **_: Any) -> list[float]:
    """1.0 for each completion that is one short sentence, else 0.0."""
    return [float(is_one_short_sentence(c if isinstance(c, str) else c[-1]["content"])) for c in completions]
