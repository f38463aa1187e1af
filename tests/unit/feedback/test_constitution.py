"""Constitution files: what they hold, and every validation error naming its line."""

from __future__ import annotations

import pytest

from bridle.feedback.constitution import (
    ConstitutionError,
    Principle,
    builtin_path,
    load_constitution,
    parse_constitution,
)

GOOD = """\
name: tiny
description: two principles
principles:
  - name: harmless
    critique_request: Say how the reply could cause harm.
    revision_request: Rewrite it without the harm.
  - critique_request: >-
      Say what is false
      in the reply.
    revision_request: "Rewrite it truthfully."
"""


def error_of(text: str) -> ConstitutionError:
    with pytest.raises(ConstitutionError) as info:
        parse_constitution(text, source="c.yaml")
    return info.value


def test_a_good_file_gives_its_principles_in_order_with_default_names():
    c = parse_constitution(GOOD, source="dir/c.yaml")
    assert c.name == "tiny" and c.description == "two principles" and c.source == "dir/c.yaml"
    assert c.principles == (
        Principle("harmless", "Say how the reply could cause harm.", "Rewrite it without the harm."),
        Principle("principle-2", "Say what is false in the reply.", "Rewrite it truthfully."))
    assert len(c.fingerprint) == 16 and c.fingerprint != parse_constitution(GOOD + "# edited\n").fingerprint


def test_name_defaults_to_the_file_stem():
    assert parse_constitution(GOOD.replace("name: tiny\n", ""), source="x/mine.yaml").name == "mine"


@pytest.mark.parametrize("text, line, words", [
    # unknown key in a principle: the key's own line, with the close match
    (GOOD.replace("    revision_request: Rewrite it without", "    revison_request: Rewrite it without"), 6,
     ["unknown key 'revison_request'", "did you mean 'revision_request'"]),
    # unknown top-level key
    ("name: x\nrules:\n  - a\nprinciples: []\n", 2, ["unknown key 'rules'"]),
    # a principle missing its revision request: the line where that principle starts
    (GOOD.replace('    revision_request: "Rewrite it truthfully."\n', ""), 7,
     ["principle 2 has no 'revision_request'"]),
    # missing both requests
    ("principles:\n  - name: only\n", 2, ["has no 'critique_request' and no 'revision_request'"]),
    # an empty list of principles
    ("name: x\nprinciples: []\n", 2, ['"principles" is empty']),
    # principles absent altogether
    ("name: x\n", 1, ['no "principles"']),
    # principles not a list
    ("principles:\n  a: b\n", 2, ['"principles" must be a list, got a mapping']),
    ("principles:\n", 1, ['"principles" must be a list, got nothing (null)']),
    # values YAML does not read as text
    (GOOD.replace("Rewrite it without the harm.", "12"), 6, ["'revision_request' must be text, got int '12'"]),
    (GOOD.replace("Rewrite it without the harm.", "yes"), 6, ["must be text, got bool 'yes'", "quote it"]),
    (GOOD.replace("  - name: harmless", "  - name: [a, b]"), 4, ["'name' must be text, got a list"]),
    (GOOD.replace("name: tiny", "name: 3"), 1, ["'name' must be text"]),
    # an empty request
    (GOOD.replace("Say how the reply could cause harm.", '""'), 5, ["'critique_request' is empty"]),
    # a key given twice
    (GOOD.replace("    revision_request: Rewrite it without the harm.\n",
                  "    revision_request: Rewrite it without the harm.\n    critique_request: again\n"), 7,
     ["key 'critique_request' appears twice (first on line 5)"]),
    # two principles with one name
    (GOOD.replace("  - critique_request: >-", "  - name: harmless\n    critique_request: >-"), 7,
     ["principle 2 is named 'harmless', as principle 1 is"]),
    # a principle that is not a mapping
    ("principles:\n  - just text\n", 2, ["principle 1 must be a mapping", "got str 'just text'"]),
    # a file that is a list
    ("- a\n- b\n", 1, ["the file must be a mapping"]),
    # broken YAML
    ("principles:\n  - name: [a\n    critique_request: b\n", 3, ["not valid YAML"]),
])
def test_errors_name_the_line(text, line, words):
    err = error_of(text)
    assert err.line == line
    message = str(err)
    assert message.startswith(f"c.yaml: line {line}: "), message
    for word in words:
        assert word in message, message
    assert "critique_request" in message  # the format hint comes with every error


def test_an_empty_file_is_refused():
    assert "empty" in str(error_of("")) and error_of("# nothing\n").line is None


def test_a_missing_file_says_how_to_get_the_default(tmp_path):
    with pytest.raises(ConstitutionError, match="`default`"):
        load_constitution(tmp_path / "nope.yaml")


def test_a_file_on_disk_loads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    assert [p.name for p in load_constitution(path).principles] == ["harmless", "principle-2"]


def test_the_shipped_default_constitution_is_valid_and_covers_harm_honesty_and_over_refusal():
    assert builtin_path().is_file()
    c = load_constitution("default")
    names = [p.name for p in c.principles]
    assert 8 <= len(names) <= 12 and len(set(names)) == len(names)
    assert {"no-uplift-for-harm", "honest-and-calibrated", "helpful-not-overcautious"} <= set(names)
    for p in c.principles:  # every request speaks of the reply it critiques or rewrites
        assert "reply" in p.critique_request and p.revision_request.startswith("Rewrite")
