"""Reward sources for online RL (PPO, GRPO, RLOO, RAFT): reward models and rule functions behind one interface,
combined with weights, so the trainer calls one object with a batch of samples and gets one float per sample."""

from __future__ import annotations

import inspect
import json
import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from bridle.data.chat import Prompt
from bridle.errors import ConfigError
from bridle.feedback.functions import FUNCTION_HOW, load_function  # noqa: F401  (re-exported)
from bridle.feedback.reward_model import RewardModel
from bridle.feedback.verifiers import BUILTINS

ENTRY_KINDS = ("a reward model directory (from `bridle rm`), a function \"module:function\" or "
               f"\"file.py:function\", a built-in ({', '.join(BUILTINS)}), or an LLM judge \"judge:grade\" / "
               "\"judge:reference\"")
JUDGE_HOW = ('A judge reward is "judge:MODE[=COLUMN][:JUDGE]": MODE "grade" scores each sample 1-10 on a rubric '
             '(against the reference answer in COLUMN when given); MODE "reference" is the probability that the '
             'sample beats the reference answer in COLUMN (default "output"). JUDGE is local[:MODEL] (default: '
             "local, the embedded smollm2-135m) or endpoint[:MODEL]. Examples: judge:grade, "
             "judge:grade=answer:endpoint:gpt-4o-mini, 0.5*judge:reference=output:local:runs/judge/model.")
JUDGE_MODES = {"grade": None, "reference": "output"}  # mode -> its default reference column (None: no reference)
GRADE_NEUTRAL, REFERENCE_NEUTRAL = 5.5, 0.5  # what an unreadable verdict scores: the middle of the scale
_WEIGHTED = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*\s*(.+?)\s*$")


@dataclass
class Sample:
    """One completion to score: its prompt (in the form the policy saw it), whether it `finished` (reached EOS or
    a stop string rather than the token limit), and the prompt row's other columns."""

    prompt: Prompt
    completion: str
    finished: bool
    columns: dict[str, Any] = field(default_factory=dict)


class RewardSource(Protocol):
    """Anything that scores a batch of samples, one float each; `name` labels its values in logs."""

    name: str

    def __call__(self, samples: Sequence[Sample]) -> list[float]: ...


class RewardModelSource:
    """A trained reward model, loaded on first use; `normalize` puts rewards on the scale of its training
    responses (reward_stats.json), so weights mean the same across reward models."""

    def __init__(self, path: str | Path, *, normalize: bool = True, batch_size: int = 8) -> None:
        self.path, self.normalize, self.batch_size = str(path), normalize, batch_size
        directory = Path(self.path)
        # `bridle rm` writes <run>/model: the run's name says more than "model"
        self.name = (directory.parent.name if directory.name == "model" and directory.parent.name else directory.name
                     ) or self.path
        self._model: RewardModel | None = None

    @property
    def model(self) -> RewardModel:
        if self._model is None:
            model = RewardModel.load(self.path)
            if torch.cuda.is_available():  # score where the policy trains
                model.model.to("cuda")
            if self.normalize:
                model.normalize([])  # raises ModelError now, before any scoring, when there are no statistics
            self._model = model
        return self._model

    def __call__(self, samples: Sequence[Sample]) -> list[float]:
        return self.model.score([s.prompt for s in samples], [s.completion for s in samples],
                                batch_size=self.batch_size, normalize=self.normalize)


class FunctionSource:
    """A TRL-style reward function named by `spec` ("package.module:function" or "path/to/file.py:function"),
    loaded now so a typo fails before training. A None result means "no opinion" and scores 0.0."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.fn = load_function(spec)
        self.name = getattr(self.fn, "__name__", spec.rsplit(":", 1)[-1])

    def __call__(self, samples: Sequence[Sample]) -> list[float]:
        names = dict.fromkeys(k for s in samples for k in s.columns if k not in ("prompts", "completions"))
        columns = {k: [s.columns.get(k) for s in samples] for k in names}
        kwargs = {"prompts": [s.prompt for s in samples], "completions": [s.completion for s in samples], **columns}
        try:
            inspect.signature(self.fn).bind(**kwargs)
        except TypeError as e:
            raise ConfigError(f"reward function {self.spec} cannot take the data's columns {sorted(columns)}: {e}."
                              "\nUse prompt data that has the columns it needs (e.g. GSM8K's \"answer\").") from e
        except ValueError:  # no signature to check (some builtins): just call it
            pass
        return self._check(self.fn(**kwargs), len(samples))

    def _check(self, result: Any, expected: int) -> list[float]:
        if hasattr(result, "tolist"):  # numpy array or torch tensor
            result = result.tolist()
        if not isinstance(result, Sequence) or isinstance(result, (str, bytes)):
            raise ConfigError(f"reward function {self.spec} returned {type(result).__name__} {result!r:.80}; "
                              f"it must return a list of {expected} floats, one per completion.")
        if len(result) != expected:
            raise ConfigError(f"reward function {self.spec} returned {len(result)} values for {expected} "
                              "completions; return one float (or None) per completion, in order.")
        values = []
        for i, value in enumerate(result):
            if value is None:
                values.append(0.0)
            elif not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ConfigError(f"reward function {self.spec} returned {value!r} for completion {i}; rewards "
                                  "must be finite numbers (or None for no opinion, scored 0.0).")
            else:
                values.append(float(value))
        return values


@dataclass(frozen=True)
class JudgeRewardSpec:
    """A parsed "judge:MODE[=COLUMN][:JUDGE]" entry."""

    mode: str
    column: str | None
    judge: str


def parse_judge_reward(entry: str) -> JudgeRewardSpec:
    """"judge:grade", "judge:grade=answer:local:DIR", "judge:reference:endpoint:gpt-4o-mini", ... (see JUDGE_HOW)."""
    from bridle.feedback.judge_spec import LLM_KINDS

    kind, _, rest = entry.partition(":")
    head, _, judge = rest.partition(":")
    mode, has_column, column = head.partition("=")
    if kind != "judge" or mode not in JUDGE_MODES or (has_column and not column):
        raise ConfigError(f'unknown judge reward "{entry}".\n{JUDGE_HOW}')
    judge = judge or "local"
    if judge.partition(":")[0] not in LLM_KINDS:
        raise ConfigError(f'judge reward "{entry}": {judge!r} is not an LLM judge. A reward model or a rule is a '
                          f"reward entry by itself (its directory, or its name / file.py:function).\n{JUDGE_HOW}")
    return JudgeRewardSpec(mode, column or JUDGE_MODES[mode], judge)


class JudgeSource:
    """Direct RLAIF (Lee et al. 2023, §2.2: the LLM's score used as the reward, no reward model trained): an LLM
    judge scores each sample. "grade": the `RubricJudge`'s 1-10 grade. "reference": P(sample ≻ reference answer),
    judged in both orders and averaged (`rlaif.preference`: p(win) + ½·p(tie)); a judge read from text (an
    endpoint) gives 1 / ½ / 0 for win / tie / loss. An unreadable verdict scores the middle of the scale (5.5,
    0.5) and is counted in `unparsed`. Verdicts are cached by (prompt, completion, reference), so a repeated sample
    (GRPO groups at low temperature, re-evaluated greedy answers) is judged once. The judge loads on first use."""

    def __init__(self, entry: str, *, batch_size: int = 8, judge: Any = None, cache_size: int = 100_000) -> None:
        self.spec = parse_judge_reward(entry)
        self.name = f"judge_{self.spec.mode}"
        self.batch_size, self.cache_size, self._judge = batch_size, cache_size, judge
        self.cache: dict[tuple[str, str, str | None], float] = {}
        self.judged = self.unparsed = 0

    @property
    def judge(self) -> Any:
        if self._judge is None:
            from bridle.feedback.judge_spec import build_backend
            from bridle.feedback.judges import PairwiseJudge, RubricJudge

            backend = build_backend(self.spec.judge, batch_size=self.batch_size)
            self._judge = RubricJudge(backend) if self.spec.mode == "grade" else PairwiseJudge(backend)
        return self._judge

    def _references(self, samples: Sequence[Sample]) -> list[str | None]:
        column = self.spec.column
        if column is None:
            return [None] * len(samples)
        values = [s.columns.get(column) for s in samples]
        bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
        if bad is not None:
            have = sorted(samples[bad].columns)
            raise ConfigError(f"reward {self.name}: the prompt row of sample {bad} has no text column {column!r} "
                              f"(its columns: {', '.join(have) or 'none'}). Name the reference column, e.g. "
                              f"judge:{self.spec.mode}={have[0] if have else 'answer'}.")
        return values

    def __call__(self, samples: Sequence[Sample]) -> list[float]:
        references = self._references(samples)
        keys = [(json.dumps(s.prompt, sort_keys=True, ensure_ascii=False), s.completion, r)
                for s, r in zip(samples, references)]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if todo:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # a sample holding each key
            prompts, answers = [samples[first[k]].prompt for k in todo], [k[1] for k in todo]
            refs = [k[2] for k in todo]
            values = self._grade(prompts, answers, refs) if self.spec.mode == "grade" else \
                self._against(prompts, answers, refs)
            if len(self.cache) + len(todo) > self.cache_size:
                self.cache.clear()
            self.cache.update(zip(todo, values))
        return [self.cache[k] for k in keys]

    def _grade(self, prompts: list[Prompt], answers: list[str], refs: list[str | None]) -> list[float]:
        grades = self.judge.grade(prompts, answers, refs if self.spec.column else None)
        return [self._count(g.score, GRADE_NEUTRAL) for g in grades]

    def _against(self, prompts: list[Prompt], answers: list[str], refs: list[str | None]) -> list[float]:
        from bridle.feedback.rlaif import preference

        outcome = {"A": 1.0, "B": 0.0, "tie": 0.5}  # of the sample, for a judge read from text
        values = []
        for verdict in self.judge.compare(prompts, answers, refs):
            p = preference(verdict)
            values.append(self._count(p if p is not None else outcome.get(verdict.winner or ""), REFERENCE_NEUTRAL))
        return values

    def _count(self, value: float | None, neutral: float) -> float:
        self.judged += 1
        if value is None:
            if not self.unparsed:
                from bridle.engine.logging import console

                console.print(f"warning: reward {self.name}: the judge's verdict on a sample could not be read; it "
                              f"scores {neutral} (the middle of the scale), as will later ones. A stronger judge "
                              "(--reward judge:...:local:MODEL or endpoint:MODEL) reads more reliably.",
                              style="yellow", markup=False)
            self.unparsed += 1
            return neutral
        return float(value)


@dataclass
class RewardBatch:
    """`total` is what the trainer optimizes; `parts` holds each source's raw values by name, for logging."""

    total: list[float]
    parts: dict[str, list[float]]


class CombinedReward:
    """total = Σ_k w_k · r_k − missing_eos_penalty · [sample not finished].

    The penalty follows Huang et al. 2024 ("The N+ implementation details of RLHF with PPO"), who penalize
    responses cut off without EOS; here it subtracts a constant rather than replacing the score.
    """

    def __init__(self, sources: list[tuple[float, RewardSource]], *, missing_eos_penalty: float = 0.0) -> None:
        if not sources:
            raise ConfigError("no reward sources given; name at least one, e.g. --reward math_exact_match.")
        self.sources, self.missing_eos_penalty = sources, missing_eos_penalty
        self.names: list[str] = []
        for _, source in sources:  # unique names, so every part is logged
            name, n = source.name, 2
            while name in self.names:
                name, n = f"{source.name}_{n}", n + 1
            self.names.append(name)

    def __call__(self, samples: Sequence[Sample]) -> RewardBatch:
        total = [-self.missing_eos_penalty if not s.finished else 0.0 for s in samples]
        parts: dict[str, list[float]] = {}
        for name, (weight, source) in zip(self.names, self.sources):
            values = [float(v) for v in source(samples)]
            if len(values) != len(samples):
                raise ValueError(f"reward source {name} returned {len(values)} values for {len(samples)} samples")
            parts[name] = values
            total = [t + weight * v for t, v in zip(total, values)]
        return RewardBatch(total, parts)


def build_reward(spec: str, *, missing_eos_penalty: float = 0.0, normalize: bool = True, batch_size: int = 8
                 ) -> CombinedReward:
    """A `CombinedReward` from "0.5*path/to/rm, math_exact_match, 0.1*my_rewards.py:brevity" (weight 1 when left
    out). `normalize` and `batch_size` apply to reward models."""
    entries = [e.strip() for e in spec.split(",")]
    if not all(entries):
        problem = "is empty" if not spec.strip() else "has an empty entry"
        raise ConfigError(f"the reward spec {spec!r} {problem}. Give a comma-separated list, each entry "
                          f'optionally weighted like "0.5*entry": {ENTRY_KINDS}.')
    sources: list[tuple[float, RewardSource]] = []
    for entry in entries:
        weighted = _WEIGHTED.match(entry)
        weight, target = (float(weighted.group(1)), weighted.group(2)) if weighted else (1.0, entry)
        sources.append((weight, _source(target, normalize=normalize, batch_size=batch_size)))
    return CombinedReward(sources, missing_eos_penalty=missing_eos_penalty)


def _source(entry: str, *, normalize: bool, batch_size: int) -> RewardSource:
    if Path(entry).expanduser().is_dir():
        return RewardModelSource(Path(entry).expanduser(), normalize=normalize, batch_size=batch_size)
    if entry.partition(":")[0] == "judge":
        return JudgeSource(entry, batch_size=batch_size)
    if ":" in entry:
        return FunctionSource(entry)
    if entry in BUILTINS:
        return FunctionSource(f"bridle.feedback.verifiers:{entry}")
    raise ConfigError(f'unknown reward "{entry}": not an existing directory, a "module:function" / '
                      f'"file.py:function" spec, or a built-in name.\nAn entry is {ENTRY_KINDS}.')
