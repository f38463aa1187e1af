"""`bridle constitute`: the supervised stage of Constitutional AI (Bai et al. 2022, §3), critique → revision.

For each prompt the policy answers; then, for each of `rounds` rounds, one principle of the constitution is drawn
(a seeded RNG per (prompt, round), so a rerun draws the same ones) and the model is shown, as in the paper,

    user: prompt │ assistant: answer │ user: critique request │ assistant: critique │ user: revision request
                                                                                     │ assistant: → revision

The revision becomes the answer the next round critiques. Critique and revision are written by the policy (the paper
uses one helpful model for every step), or the critique by `critic` when one is given.

A revision is cleaned of a leading "Here is the revised response:" style label and of quotes around it, nothing
more. It is refused, counted by reason, when it is empty, copies the request or the critique, or loops on a few
words (`degenerate_reason`); the answer then stays as it was for the next round. Never guessed at.

Outputs, each row appended and flushed as soon as its prompt is done (`Journal`):
    trace.jsonl        every prompt's original answer, and per round its principle, requests, critique, raw and
                       cleaned revision, and whether the revision was kept: the record the other two derive from
    sft.jsonl          {"prompt", "completion": final revision}: for prompts with at least one kept revision
    preferences.jsonl  {"prompt", "chosen": final revision, "rejected": original answer}: where the two differ
    report.json        the counts (`summarize`) and the settings
A killed run resumes: prompts already in trace.jsonl are skipped, and sft / preference rows missing for them (a kill
between the writes) are derived again from their trace rows. settings.json holds what changes the output; a rerun
with other settings is refused rather than mixed into the same files.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from bridle.data.chat import Prompt, conversation
from bridle.errors import ConfigError, DataError
from bridle.feedback.constitution import Constitution, Principle
from bridle.feedback.journal import Journal

TRACE, SFT, PREFERENCES, REPORT, SETTINGS = "trace.jsonl", "sft.jsonl", "preferences.jsonl", "report.json", \
    "settings.json"
KEY = "prompt_index"
RESUME_HINT = "Pass --overwrite to start again in this directory, or choose another --output-dir."

# A first line that only announces the revision: "Here is the revised response:", "Revised answer:", "Revision:".
_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:(?:sure[,!.]?\s*)?(?:here(?:'s|\s+is)|below\s+is)\b[^\n:]{0,80}?"
    r"(?:revis|rewr|rewrit|improv|updat|new|edit)\w*[^\n:]{0,80}"
    r"|(?:revised|rewritten|improved|updated|new|edited)\s+(?:response|reply|answer|version)"
    r"|revision|assistant)\s*:(?:\*\*)?[ \t]*\n?", re.IGNORECASE)
_QUOTES = {'"': '"', "“": "”", "'": "'"}
REPETITIVE_MIN_WORDS, REPETITIVE_UNIQUE = 20, 0.25


class Generator(Protocol):
    """What answers conversations: `bridle.rollout.answers.AnswerGenerator`, or a scripted one in tests."""

    def answers(self, prompts: Sequence[Prompt], *, n: int = 1, max_new_tokens: int = 256, temperature: float = 0.0,
                top_p: float = 1.0, seed: int = 0, batch_size: int = 8, progress: bool = False
                ) -> list[list[str]]: ...


@dataclass(frozen=True)
class Settings:
    """What changes the output, bar the models and the prompts: rounds, the principle-and-sampling seed, sampling.
    `batch_size` is also the resume granularity: prompts are done (and written) a batch at a time."""

    rounds: int = 1
    seed: int = 0
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("--rounds, --max-new-tokens and --batch-size must each be at least 1.")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("--temperature must be >= 0 and --top-p in (0, 1].")


# ---- pure pieces -----------------------------------------------------------------------------------------------


def pick_principle(count: int, prompt_index: int, round_number: int, seed: int) -> int:
    """The index of the principle for one (prompt, round): its own RNG, seeded by a string (stable across runs and
    Python versions), so it does not depend on how many rounds or which other prompts are run."""
    return random.Random(f"bridle-constitute:{seed}:{prompt_index}:{round_number}").randrange(count)


def step_seed(seed: int, prompt_index: int, round_number: int, step: str) -> int:
    """The sampling seed of one generate call, named by its batch's first prompt, round and step."""
    digest = hashlib.sha256(f"{seed}:{prompt_index}:{round_number}:{step}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def critique_conversation(prompt: Prompt, answer: str, principle: Principle) -> list[dict[str, str]]:
    """prompt, the answer, and the principle's critique request as the next user turn."""
    return [*conversation(prompt), {"role": "assistant", "content": answer},
            {"role": "user", "content": principle.critique_request}]


def revision_conversation(prompt: Prompt, answer: str, principle: Principle, critique: str) -> list[dict[str, str]]:
    """The critique conversation, the critique, and the principle's revision request as the next user turn."""
    return [*critique_conversation(prompt, answer, principle), {"role": "assistant", "content": critique},
            {"role": "user", "content": principle.revision_request}]


def clean_revision(text: str) -> str:
    """The revision without a leading label line ("Here is the revised response:", "Revision:") and without quotes
    around the whole of it; its words are left as they are."""
    out = _LABEL.sub("", text.strip(), count=1).strip()
    if len(out) >= 2 and _QUOTES.get(out[0]) == out[-1] and out[0] not in out[1:-1] and out[-1] not in out[1:-1]:
        out = out[1:-1].strip()
    return out


def _normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def degenerate_reason(revision: str, principle: Principle, critique: str) -> str | None:
    """Why a cleaned revision cannot stand as the new answer ("empty", "copies the request", "copies the critique",
    "repetitive": under 25% distinct words in 20 or more), or None when it can."""
    words = _normal(revision)
    if not words:
        return "empty"
    if words in (_normal(principle.revision_request), _normal(principle.critique_request)):
        return "copies the request"
    if words == _normal(critique):
        return "copies the critique"
    tokens = words.split()
    if len(tokens) >= REPETITIVE_MIN_WORDS and len(set(tokens)) / len(tokens) < REPETITIVE_UNIQUE:
        return "repetitive"
    return None


def outputs_of(trace: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(SFT row, preference row) of one trace row: SFT when a revision was kept, preference when the final answer
    also differs from the original. Either is None when it does not apply."""
    if not trace["revised"]:
        return None, None
    base = {KEY: trace[KEY], "prompt": trace["prompt"]}
    sft = {**base, "completion": trace["final"]}
    if trace["final"].strip() == trace["original"].strip():
        return sft, None
    return sft, {**base, "chosen": trace["final"], "rejected": trace["original"]}


def summarize(traces: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The counts a run reports: prompts, rows written, kept and refused revisions by reason, empty critiques and
    answers, prompts left unrevised (no SFT row) or unchanged (no preference row), principles drawn."""
    refused: Counter[str] = Counter()
    drawn: Counter[str] = Counter()
    kept = empty_critiques = sft = preferences = 0
    for trace in traces:
        for step in trace["rounds"]:
            drawn[step["principle"]] += 1
            empty_critiques += not step["critique"].strip()
            if step["kept"]:
                kept += 1
            else:
                refused[step["refused_because"]] += 1
        sft_row, preference_row = outputs_of(trace)
        sft += sft_row is not None
        preferences += preference_row is not None
    return {"prompts": len(traces), "sft_rows": sft, "preference_rows": preferences,
            "revisions_kept": kept, "revisions_refused": dict(refused.most_common()),
            "unrevised_prompts": sum(not t["revised"] for t in traces),
            "unchanged_prompts": sum(bool(t["revised"]) and outputs_of(t)[1] is None for t in traces),
            "empty_critiques": empty_critiques,
            "empty_original_answers": sum(not t["original"].strip() for t in traces),
            "principles_drawn": dict(sorted(drawn.items()))}


# ---- the loop --------------------------------------------------------------------------------------------------


def _generate(model: Generator, conversations: list[list[dict[str, str]]], settings: Settings, seed: int
              ) -> list[str]:
    groups = model.answers(conversations, n=1, max_new_tokens=settings.max_new_tokens,
                           temperature=settings.temperature, top_p=settings.top_p, seed=seed,
                           batch_size=settings.batch_size)
    return [group[0] for group in groups]


def constitute_batch(items: Sequence[tuple[int, Prompt]], policy: Generator, constitution: Constitution,
                     settings: Settings, *, critic: Generator | None = None) -> list[dict[str, Any]]:
    """The trace rows of a batch of (prompt index, prompt): answer, then `settings.rounds` critique → revision
    rounds, every step one generate call for the whole batch."""
    if not items:
        return []
    first = items[0][0]
    prompts = [p for _, p in items]
    originals = _generate(policy, [conversation(p) for p in prompts], settings,
                          step_seed(settings.seed, first, 0, "answer"))
    answers = list(originals)
    rounds: list[list[dict[str, Any]]] = [[] for _ in items]
    for number in range(1, settings.rounds + 1):
        principles = [constitution.principles[pick_principle(len(constitution.principles), index, number,
                                                             settings.seed)] for index, _ in items]
        critiques = _generate(critic or policy, [critique_conversation(p, a, pr) for p, a, pr in
                                                 zip(prompts, answers, principles)],
                              settings, step_seed(settings.seed, first, number, "critique"))
        raw = _generate(policy, [revision_conversation(p, a, pr, c) for p, a, pr, c in
                                 zip(prompts, answers, principles, critiques)],
                        settings, step_seed(settings.seed, first, number, "revision"))
        for i, principle in enumerate(principles):
            revision = clean_revision(raw[i])
            reason = degenerate_reason(revision, principle, critiques[i])
            rounds[i].append({"round": number, "principle": principle.name, "answer": answers[i],
                              "critique_request": principle.critique_request, "critique": critiques[i],
                              "revision_request": principle.revision_request, "revision_raw": raw[i],
                              "revision": revision, "kept": reason is None, "refused_because": reason})
            if reason is None:
                answers[i] = revision
    return [{KEY: index, "prompt": prompt, "original": originals[i], "final": answers[i],
             "revised": any(step["kept"] for step in rounds[i]), "rounds": rounds[i]}
            for i, (index, prompt) in enumerate(items)]


def check_settings(out: Path, wanted: Mapping[str, Any], *, overwrite: bool) -> None:
    """Write settings.json, or on a rerun check that it names the same settings (else a ConfigError listing the
    changes): one directory, one set of settings."""
    from bridle.engine.rundir import config_changes

    path = out / SETTINGS
    wanted = json.loads(json.dumps(dict(wanted), default=str))
    if path.exists() and not overwrite:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise DataError(f"not JSON ({e}).", source=str(path), hint=RESUME_HINT) from None
        changes = config_changes(stored, wanted)
        if changes:
            raise ConfigError(f"{out} holds a constitute run with other settings ({'; '.join(changes)}); resuming "
                              f"would mix the two in one file. {RESUME_HINT}")
    path.write_text(json.dumps(wanted, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_trace(trace: Journal, prompts: Sequence[Prompt]) -> None:
    for number, row in enumerate(trace, start=1):
        index = row.get(KEY)
        if not isinstance(index, int) or index < 0:
            raise DataError(f"line {number} has no prompt_index; this file was not written by `bridle constitute`.",
                            source=str(trace.path), hint=RESUME_HINT)
        if index >= len(prompts):
            raise DataError(f"line {number} is prompt {index}, but only {len(prompts)} prompts are given now (a "
                            "smaller --limit than the run that wrote it?).", source=str(trace.path),
                            hint=RESUME_HINT)
        if row.get("prompt") != prompts[index]:
            raise DataError(f"line {number} is not a trace of prompt {index} of this data: the prompts changed "
                            "since the run that wrote it.", source=str(trace.path), hint=RESUME_HINT)


def run_constitute(prompts: Sequence[Prompt], policy: Generator, constitution: Constitution, output_dir: str | Path,
                   *, settings: Settings = Settings(), critic: Generator | None = None,
                   run_info: Mapping[str, Any] | None = None, data_report: str = "", overwrite: bool = False,
                   progress: bool = False, note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Critique and revise every prompt into `output_dir` (see the module docstring); returns the report.
    `run_info` (models, data) joins the settings that a rerun must match; `data_report` (how many prompt rows were
    read and skipped) goes into the report as it is."""
    from bridle.engine.logging import task_progress

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # batch size is not checked: it changes speed (and, when sampling, the draws), not what a row means
    output_settings = {k: v for k, v in asdict(settings).items() if k != "batch_size"}
    check_settings(out, {**(run_info or {}), **output_settings, "constitution": constitution.fingerprint},
                   overwrite=overwrite)
    with Journal(out / TRACE, KEY, fresh=overwrite) as trace, Journal(out / SFT, KEY, fresh=overwrite) as sft, \
            Journal(out / PREFERENCES, KEY, fresh=overwrite) as preferences:
        _check_trace(trace, prompts)
        repaired = 0
        for row in trace:  # rows a kill cut off between the trace write and its outputs
            for journal, derived in zip((sft, preferences), outputs_of(row)):
                if derived is not None and row[KEY] not in journal:
                    journal.write(derived)
                    repaired += 1
        if note and trace.resumed:
            note(f"resuming: {trace.resumed} of {len(prompts)} prompts already done in {trace.path}"
                 + (f" ({repaired} output rows restored from their traces)" if repaired else ""))
        todo = [(i, p) for i, p in enumerate(prompts) if i not in trace]
        with task_progress("constitute", len(prompts), show=progress) as bar:
            bar.advance(bar.task_ids[0], len(prompts) - len(todo))
            for start in range(0, len(todo), settings.batch_size):
                batch = todo[start:start + settings.batch_size]
                for row in constitute_batch(batch, policy, constitution, settings, critic=critic):
                    trace.write(row)  # first: the record the outputs derive from
                    for journal, derived in zip((sft, preferences), outputs_of(row)):
                        if derived is not None:
                            journal.write(derived)
                bar.advance(bar.task_ids[0], len(batch))
        rows = sorted(trace.rows, key=lambda r: r[KEY])
        report = {**summarize(rows), "resumed_prompts": trace.resumed, "generated_prompts": len(todo),
                  "torn_lines_dropped": trace.torn_lines + sft.torn_lines + preferences.torn_lines,
                  "constitution": {"name": constitution.name, "source": constitution.source,
                                   "principles": len(constitution.principles),
                                   "fingerprint": constitution.fingerprint},
                  "settings": asdict(settings), **({"run": dict(run_info)} if run_info else {}),
                  **({"data_report": data_report} if data_report else {})}
    (out / REPORT).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return report
