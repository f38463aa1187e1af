"""Built-in verifiers on GSM8K-style text, scored by hand."""

from __future__ import annotations

import pytest

from bridle.feedback.verifiers import (
    extract_final_number,
    format_answer_line,
    length_limit,
    make_length_limit,
    math_exact_match,
)

GOLD = ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
        "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer’s market.\n#### 18")


@pytest.mark.parametrize(("text", "number"), [
    (GOLD, "18"),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 1,072", "1072"),
    ("So the total is \\boxed{1,234.0} dollars, not 5.", "1234"),
    ("We get \\boxed{\\text{\\$}42} and then 7 more steps", "42"),
    ("First 3 apples, then 4.\nThe answer is $12.", "12"),
    ("Answer: -0.50", "-0.5"),
    ("She has 5 cats and 12 dogs, so 17.", "17"),
    ("16-3 gives 13", "13"),
    ("####\nbut really 9", "9"),  # a marker with no number after it falls through
    ("I do not know.", None),
    ("", None),
])
def test_extract_final_number(text, number):
    assert extract_final_number(text) == number


def test_exact_match_against_a_gsm8k_gold_answer():
    completions = [
        "She has 16 - 3 - 4 = 9 eggs left and sells them at $2 each, so 9 * 2 = 18.\nAnswer: 18",
        "9 eggs * $2 = $18.00",            # 18.00 == 18
        "16 - 3 = 13 eggs, 13 * 2 = 26.\n#### 26",
        "I cannot tell.",
    ]
    assert math_exact_match([""] * 4, completions, answer=[GOLD] * 4) == [1.0, 1.0, 0.0, 0.0]


def test_exact_match_has_no_opinion_when_the_gold_holds_no_number():
    assert math_exact_match(["q"], ["42"], answer=["see the figure"]) == [None]
    assert math_exact_match(["q"], ["42"], answer=[42]) == [1.0]  # numeric gold columns work too


def test_format_answer_line_wants_the_answer_on_the_last_line():
    completions = ["5 + 7 = 12\nAnswer: 12", "work\n#### $1,000.\n\n", "Answer: 12\nthanks!", "the answer is 12",
                   "Answer: twelve"]
    assert format_answer_line([""] * 5, completions) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_length_limit_is_zero_up_to_the_limit_then_linear():
    words = lambda n: " ".join(["w"] * n)  # noqa: E731
    # limit 10: 10 words → 0; 15 → −5/10; 20 → −1
    assert length_limit([""] * 3, [words(10), words(15), words(20)], max_words=10) == [0.0, -0.5, -1.0]
    assert make_length_limit(10)(prompts=[""], completions=[words(30)]) == [-2.0]
    assert length_limit([""], [words(200)]) == [0.0]  # the default limit is 200 words
