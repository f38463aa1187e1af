"""`bridle curate`: a small SFT set chosen from a large pool (LIMA, Zhou et al. 2023: "less is more").

    pool ──► length bounds ──► quality score ──► near-duplicate removal ──► spread over prompt clusters ──► subset
             (chars/tokens)    (rm, judge, rule,  (Jaccard of prompt         (k-center over TF-IDF,
                                length, none)      shingles, keep the best)   best-scored first per cluster)

The pool is read by `bridle sft`'s own reader (`bridle.data` normalize, kind "sft"), so any row `bridle sft` trains
on can be curated, and the subset is written as the input rows themselves (a Self-Instruct row keeps only its chosen
instances), so `bridle sft` trains on it unchanged. Scores are written to `scores.jsonl` as they are made, keyed by
the score source and the row's content, so a killed run resumes without rescoring and rows identical in content are
scored once. Every pool row gets one reason in `report.json`: kept, bad row, a length bound, unscored (a judge reply
that could not be read: never guessed), near duplicate of a kept row, or lower score in its cluster.

Stages are pure functions (`length_reasons`, `select`) around one function with the files (`curate_files`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridle.data.chat import Prompt
from bridle.data.formats import normalize
from bridle.data.sources import load_rows
from bridle.errors import ConfigError, DataError
from bridle.feedback import diversity
from bridle.feedback.journal import Journal
from bridle.feedback.judges import Grade, Judge, summarize_grades

SCORE_HINT = ("--score is one of: length (answer characters), none, rm:DIR (a `bridle rm` reward model), "
              "judge:local[:MODEL] or judge:endpoint[:MODEL] (an LLM grading each answer 1-10), rule:NAME (a built-in "
              "rule or module:function / file.py:function).")
# flag name → (part measured, unit, "min" | "max")
BOUNDS = {"min_prompt_chars": ("prompt", "chars", "min"), "max_prompt_chars": ("prompt", "chars", "max"),
          "min_answer_chars": ("answer", "chars", "min"), "max_answer_chars": ("answer", "chars", "max"),
          "min_answer_tokens": ("answer", "tokens", "min"), "max_answer_tokens": ("answer", "tokens", "max"),
          "max_tokens": ("example", "tokens", "max")}  # the whole example as `bridle sft` tokenizes it
KEPT, BAD, UNSCORED, DUPLICATE, CROWDED = ("kept", "bad row", "unscored", "near duplicate",
                                          "lower score in its cluster")


@dataclass(frozen=True)
class Candidate:
    """One example of the pool: `instance` is its index in a Self-Instruct row's "instances" when that row held
    several (None otherwise); `raw` is the input row as read."""

    id: str
    source: str
    row: int
    instance: int | None
    prompt: Prompt
    answer: Prompt
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Options:
    """What to keep: `size` rows; `bounds` {BOUNDS key: value}; Jaccard `dedup_threshold` (None: no dedup) on
    `shingle_size`-word shingles; `clusters` (0: ceil(size / 4)); `seed` draws k-center's first center."""

    size: int
    bounds: Mapping[str, int] = field(default_factory=dict)
    dedup_threshold: float | None = 0.7
    shingle_size: int = 3
    clusters: int = 0
    seed: int = 0

    def check(self) -> None:
        if self.size < 1:
            raise ConfigError(f"--size must be >= 1, got {self.size}.")
        if self.dedup_threshold is not None and not 0.0 < self.dedup_threshold <= 1.0:
            raise ConfigError(f"--dedup-threshold must be in (0, 1] (Jaccard similarity), got {self.dedup_threshold}"
                              "; pass --no-dedup to keep near duplicates.")
        if self.shingle_size < 1 or self.clusters < 0:
            raise ConfigError("--shingle-size must be >= 1 and --clusters >= 0 (0: size / 4).")
        for name, value in self.bounds.items():
            if name not in BOUNDS or value < 0:
                raise ConfigError(f"length bound {name}={value}: bounds are {', '.join(BOUNDS)}, each >= 0 (0: none).")

    @property
    def cluster_count(self) -> int:
        return self.clusters or math.ceil(self.size / 4)


@dataclass(frozen=True)
class Decision:
    """Why a candidate was kept or dropped; `detail` says it with numbers, `cluster` / `duplicate_of` when known."""

    kept: bool
    reason: str
    detail: str = ""
    cluster: int | None = None
    duplicate_of: str | None = None


def text_of(value: Prompt) -> str:
    """A prompt or answer as plain text: text as is, messages as their contents one per line."""
    return value if isinstance(value, str) else "\n".join(m["content"] for m in value)


# ---- the pool ------------------------------------------------------------------------------------------------

def load_pool(sources: Sequence[str | os.PathLike], *, on_bad_row: str = "error"
              ) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """(candidates, bad rows) of every source, read as `bridle sft` reads them. A bad row raises DataError naming
    file, row and field ("error"), or is listed with its reason ("skip")."""
    candidates: list[Candidate] = []
    bad: list[dict[str, Any]] = []
    for source in sources:
        name = str(source)
        rows = load_rows(source)
        if not rows:
            raise DataError("no rows found.", source=name)
        for raw in rows:
            records, problems = normalize([raw], "sft", on_bad_row=on_bad_row, source_hint=name)  # type: ignore[arg-type]
            if problems.total():
                bad.append({"id": f"{name}:{raw.row}", "source": name, "row": raw.row, "kept": False, "reason": BAD,
                            "detail": problems.examples[0] if problems.examples else problems.reasons()})
            several = len(records) > 1
            for k, record in enumerate(records):
                candidates.append(Candidate(f"{name}:{raw.row}" + (f"[{k}]" if several else ""), name, raw.row,
                                            k if several else None, record["prompt"], record["completion"],
                                            raw.value))
    return candidates, bad


def write_subset(candidates: Sequence[Candidate], keep: Sequence[bool], path: str | Path) -> int:
    """The kept candidates as their input rows, in input order (a Self-Instruct row with only its kept instances);
    returns the number of lines written."""
    lines: list[str] = []
    by_row: dict[tuple[str, int], list[int]] = {}
    for c, k in zip(candidates, keep):
        if k:
            by_row.setdefault((c.source, c.row), []).append(c.instance if c.instance is not None else -1)
    for c in candidates:
        instances = by_row.pop((c.source, c.row), None)
        if instances is None:
            continue
        row = dict(c.raw)
        if instances != [-1]:
            row["instances"] = [row["instances"][i] for i in instances]
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(lines), encoding="utf-8")
    return len(lines)


# ---- stage 1: length bounds ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenCounter:
    """Token counts with one tokenizer: `text` counts a prompt's or answer's text alone; `example` the whole example
    as `bridle sft` tokenizes it (chat template included), so `--max-tokens` = `--max-length` means no truncation."""

    text: Callable[[str], int]
    example: Callable[[Prompt, Prompt], int]

    @classmethod
    def load(cls, name: str, *, chat_template: str = "auto") -> TokenCounter:
        from bridle.data.chat import encode_conversation, token_ids
        from bridle.models import load_tokenizer

        tokenizer = load_tokenizer(name, chat_template=chat_template)
        return cls(lambda text: len(token_ids(tokenizer, text)),
                   lambda prompt, answer: len(encode_conversation(prompt, answer, tokenizer)[0]))


def length_reasons(candidates: Sequence[Candidate], bounds: Mapping[str, int],
                   tokens: TokenCounter | None = None) -> dict[int, Decision]:
    """{candidate index: Decision} for those outside a bound (the first bound they break, in BOUNDS order); a bound
    of 0 is none. Token bounds need `tokens`."""
    active = [(name, bounds[name]) for name in BOUNDS if bounds.get(name, 0) > 0]
    if any(BOUNDS[name][1] == "tokens" for name, _ in active) and tokens is None:
        raise ConfigError("token length bounds need a tokenizer to count with (--tokenizer).")
    dropped: dict[int, Decision] = {}
    for i, c in enumerate(candidates):
        for name, value in active:
            part, unit, side = BOUNDS[name]
            if part == "example":
                size = tokens.example(c.prompt, c.answer)  # type: ignore[union-attr]
            else:
                text = text_of(c.prompt if part == "prompt" else c.answer)
                size = len(text) if unit == "chars" else tokens.text(text)  # type: ignore[union-attr]
            if (size < value) if side == "min" else (size > value):
                what = "too many tokens" if part == "example" else f"{part} too {'short' if side == 'min' else 'long'}"
                flag = "--" + name.replace("_", "-")
                unit_text = "tokens with the chat template" if part == "example" else unit
                dropped[i] = Decision(False, what, f"{part} is {size} {unit_text}, "
                                                   f"{'below' if side == 'min' else 'above'} {flag} {value}")
                break
    return dropped


# ---- stage 2: quality scores ---------------------------------------------------------------------------------

Scorer = Callable[[Sequence[Prompt], Sequence[Prompt]], list[Grade]]


@dataclass(frozen=True)
class ScoreSource:
    """A named scorer; `journaled` ones (models, judges, rules) have their scores written as they are made."""

    spec: str
    grade: Scorer
    journaled: bool


def build_score_source(spec: str, *, batch_size: int = 8) -> ScoreSource:
    """The scorer of `--score SPEC` (SCORE_HINT)."""
    kind, _, arg = spec.partition(":")
    if spec == "none":
        return ScoreSource(spec, lambda prompts, answers: [Grade(0.0, "") for _ in answers], False)
    if spec == "length":
        return ScoreSource(spec, lambda prompts, answers: [Grade(float(len(text_of(a))), "") for a in answers], False)
    judge: Judge
    if kind == "judge" and arg:
        from bridle.feedback.judge_spec import build_backend
        from bridle.feedback.judges import RubricJudge

        judge = RubricJudge(build_backend(arg, batch_size=batch_size))
    elif kind == "rm" and arg:
        from bridle.feedback.judges import RewardModelJudge

        judge = RewardModelJudge(arg, batch_size=batch_size)
    elif kind == "rule" and arg:
        from bridle.feedback.judges import RuleJudge

        rule = RuleJudge(arg)  # rules read completions as text (TRL's convention), a chat answer as its content
        return ScoreSource(spec, lambda prompts, answers: rule.grade(prompts, [text_of(a) for a in answers]), True)
    else:
        raise ConfigError(f"unknown --score {spec!r}. {SCORE_HINT}")
    return ScoreSource(spec, lambda prompts, answers: judge.grade(prompts, answers), True)


def score_key(spec: str, candidate: Candidate) -> str:
    """The journal key of a score: the score source and the row's content, so a changed row is scored again."""
    text = json.dumps([spec, candidate.prompt, candidate.answer], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclass
class Scores:
    """One score per candidate (None: not scored, or the judge's reply unreadable) and how they were got."""

    values: list[float | None]
    computed: int = 0
    resumed: int = 0
    unparsed: int = 0
    torn_lines: int = 0


def score_candidates(candidates: Sequence[Candidate], wanted: Sequence[int], source: ScoreSource, *,
                     journal_path: str | Path | None = None, batch_size: int = 8, fresh: bool = False,
                     progress: bool = False) -> Scores:
    """Scores of the candidates at `wanted`, in chunks of `batch_size`; a journaled source appends each chunk's rows
    to `journal_path` at once and reuses every row already there (same source, same content)."""
    from bridle.engine.logging import task_progress

    scores = Scores([None] * len(candidates))
    if not source.journaled or journal_path is None:
        grades = source.grade([candidates[i].prompt for i in wanted], [candidates[i].answer for i in wanted])
        for i, g in zip(wanted, grades):
            scores.values[i] = g.score
        scores.computed = len(wanted)
        scores.unparsed = summarize_grades(grades)["unparsed"]
        return scores
    keys = {i: score_key(source.spec, candidates[i]) for i in wanted}
    with Journal(journal_path, "key", fresh=fresh) as journal:
        scores.torn_lines = journal.torn_lines
        done = {row["key"]: row for row in journal}
        pending = list(dict.fromkeys(keys[i] for i in wanted if keys[i] not in done))  # identical rows: once
        first = {}
        for i in wanted:
            first.setdefault(keys[i], i)
        with task_progress("scoring", len(pending), show=progress) as bar:
            for start in range(0, len(pending), batch_size):
                chunk = [first[k] for k in pending[start:start + batch_size]]
                grades = source.grade([candidates[i].prompt for i in chunk], [candidates[i].answer for i in chunk])
                if len(grades) != len(chunk):
                    raise ConfigError(f"--score {source.spec} gave {len(grades)} scores for {len(chunk)} examples.")
                for i, g in zip(chunk, grades):
                    row = {"key": keys[i], "id": candidates[i].id, "score": g.score, "raw": g.raw}
                    journal.write(row)
                    done[keys[i]] = row
                bar.advance(bar.task_ids[0], len(chunk))
    scores.computed = len(pending)
    scores.resumed = len({keys[i] for i in wanted}) - len(pending)
    for i in wanted:
        scores.values[i] = done[keys[i]]["score"]
    scores.unparsed = sum(scores.values[i] is None for i in wanted)
    return scores


# ---- stages 3 and 4: near duplicates, then the spread over clusters ------------------------------------------

@dataclass
class Selection:
    """A decision per candidate, and the clusters of the rows that reached the spread (k-center centers)."""

    decisions: list[Decision]
    centers: list[int]
    cluster_sizes: list[int]


def select(candidates: Sequence[Candidate], scores: Sequence[float | None], options: Options,
           dropped: Mapping[int, Decision] | None = None) -> Selection:
    """Decide every candidate: those in `dropped` (length bounds) stay dropped; unscored ones are dropped; the rest
    are deduplicated best first (score, then input order), clustered, and `options.size` picked over the clusters."""
    decisions: dict[int, Decision] = dict(dropped or {})
    for i, s in enumerate(scores):
        if i not in decisions and s is None:
            decisions[i] = Decision(False, UNSCORED, "the judge's reply held no readable grade")
    alive = [i for i in range(len(candidates)) if i not in decisions]
    order = sorted(alive, key=lambda i: (-scores[i], i))  # type: ignore[operator]
    texts = {i: text_of(candidates[i].prompt) or text_of(candidates[i].answer) for i in alive}
    if options.dedup_threshold is not None:
        sets = [diversity.shingles(texts[i], options.shingle_size) for i in alive]
        pairs = [(alive[a], alive[b], j) for a, b, j in diversity.similar_pairs(sets, options.dedup_threshold)]
        for row, (other, similarity) in diversity.dedup(order, pairs).items():
            decisions[row] = Decision(False, DUPLICATE, f"prompt Jaccard {similarity:.2f} with {candidates[other].id}"
                                                        f" (score {scores[other]:.4g} vs {scores[row]:.4g})",
                                      duplicate_of=candidates[other].id)
        order = [i for i in order if i not in decisions]
    survivors = sorted(order)
    vectors = diversity.tfidf([texts[i] for i in survivors])
    centers, local_cluster = diversity.k_center(vectors, options.cluster_count, seed=options.seed)
    cluster = {i: int(c) for i, c in zip(survivors, local_cluster)}
    sizes = Counter(cluster.values())
    picked = set(diversity.spread(order, cluster, options.size))
    gave = Counter(cluster[i] for i in picked)
    seen: Counter[int] = Counter()
    for i in order:  # best first, so a row's rank in its cluster is how many of the cluster came before, plus one
        c = cluster[i]
        seen[c] += 1
        where = f"cluster {c}: rank {seen[c]} of {sizes[c]} by score, {gave[c]} kept"
        decisions[i] = Decision(True, KEPT, where, c) if i in picked else Decision(False, CROWDED, where, c)
    return Selection([decisions[i] for i in range(len(candidates))], [survivors[c] for c in centers],
                     [sizes[c] for c in range(len(centers))])


# ---- the report ----------------------------------------------------------------------------------------------

def build_report(candidates: Sequence[Candidate], scores: Scores, selection: Selection, bad: Sequence[dict],
                 *, options: Options, inputs: Sequence[str], score_spec: str) -> dict[str, Any]:
    """report.json: the options, score counts, clusters, counts per reason, and one entry per pool row."""
    rows = list(bad)
    for c, s, d in zip(candidates, scores.values, selection.decisions):
        prompt = text_of(c.prompt)
        rows.append({"id": c.id, "source": c.source, "row": c.row, "instance": c.instance, "kept": d.kept,
                     "reason": d.reason, "detail": d.detail, "score": s, "cluster": d.cluster,
                     "duplicate_of": d.duplicate_of, "prompt_chars": len(prompt),
                     "answer_chars": len(text_of(c.answer)), "prompt": prompt[:100]})
    counts = Counter(r["reason"] for r in rows)
    kept_scores = [s for s, d in zip(scores.values, selection.decisions) if d.kept and s is not None]
    return {"inputs": list(inputs), "pool": len(candidates), "bad_rows": len(bad), "size": options.size,
            "kept": counts[KEPT], "options": {**{k: v for k, v in vars(options).items() if k != "bounds"},
                                              "bounds": dict(options.bounds), "clusters": options.cluster_count},
            "score": {"source": score_spec, "computed": scores.computed, "resumed": scores.resumed,
                      "unparsed": scores.unparsed, "torn_journal_lines": scores.torn_lines,
                      "mean_kept": sum(kept_scores) / len(kept_scores) if kept_scores else None},
            "counts": dict(counts.most_common()),
            "clusters": [{"cluster": k, "center": candidates[c].id, "size": n,
                          "kept": sum(d.kept and d.cluster == k for d in selection.decisions)}
                         for k, (c, n) in enumerate(zip(selection.centers, selection.cluster_sizes))],
            "rows": rows}


def print_report(report: Mapping[str, Any], console: Any) -> None:
    """Counts per reason as a table, then one line on scores and clusters."""
    from rich.table import Table

    table = Table(title=f"curate: kept {report['kept']} of {report['pool']} examples (asked for {report['size']})")
    table.add_column("reason")
    table.add_column("rows", justify="right")
    for reason, n in report["counts"].items():
        table.add_row(reason, str(n))
    console.print(table)
    score = report["score"]
    kept = [c["kept"] for c in report["clusters"]]
    console.print(f"scores ({score['source']}): {score['computed']} computed, {score['resumed']} resumed, "
                  f"{score['unparsed']} unreadable; clusters: {len(kept)}, kept per cluster "
                  + (f"{min(kept)}-{max(kept)}" if kept else "-"))
    if score["unparsed"]:
        console.print(f"note: {score['unparsed']} judge replies held no readable grade, so their rows were dropped, "
                      "never guessed; the replies are in scores.jsonl (\"raw\").")
    if report["kept"] < report["size"]:
        console.print(f"note: only {report['kept']} rows passed every stage, fewer than --size {report['size']}; "
                      "see the reasons above.")


def curate_files(inputs: Sequence[str], output_dir: str | Path, options: Options, *, score: str = "length",
                 tokenizer: str = "smollm2-135m", chat_template: str = "auto", batch_size: int = 8,
                 on_bad_row: str = "error",
                 rescore: bool = False, progress: bool = False, source: ScoreSource | None = None) -> dict[str, Any]:
    """The whole command: read `inputs`, decide, write curated.jsonl and report.json (and scores.jsonl for journaled
    scores) into `output_dir`; returns the report. `source` replaces the one `score` names (tests script it)."""
    options.check()
    candidates, bad = load_pool(inputs, on_bad_row=on_bad_row)
    if not candidates:
        raise DataError("no usable rows in the pool.", source=", ".join(map(str, inputs)),
                        hint="Rows need what `bridle sft` reads; see the bad rows in the message above.")
    counting = any(BOUNDS[k][1] == "tokens" and v > 0 for k, v in options.bounds.items())
    tokens = TokenCounter.load(tokenizer, chat_template=chat_template) if counting else None
    dropped = length_reasons(candidates, options.bounds, tokens)
    source = source or build_score_source(score, batch_size=batch_size)
    out = Path(output_dir)
    wanted = [i for i in range(len(candidates)) if i not in dropped]
    scores = score_candidates(candidates, wanted, source, journal_path=out / "scores.jsonl", batch_size=batch_size,
                              fresh=rescore, progress=progress)
    selection = select(candidates, scores.values, options, dropped)
    write_subset(candidates, [d.kept for d in selection.decisions], out / "curated.jsonl")
    report = build_report(candidates, scores, selection, bad, options=options, inputs=[str(p) for p in inputs],
                          score_spec=source.spec)
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return report
