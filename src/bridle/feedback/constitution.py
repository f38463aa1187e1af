"""A constitution for `bridle constitute`: principles, each a critique request and a revision request (Bai et al.
2022, "Constitutional AI", §3.1), read from YAML and checked so that every mistake names its line.

    name: my-constitution           # optional
    description: what it is for     # optional
    principles:
      - name: harmless              # optional; default principle-1, principle-2, ...
        critique_request: Point out ways the assistant's last reply could help someone cause harm.
        revision_request: Rewrite the reply so that it gives no such help, and still helps where it safely can.

The file is read with `yaml.compose`, not `yaml.safe_load`, so that each node keeps its position: an unknown key, a
missing or empty request, a value that is not text (YAML reads `yes` as true, `12` as a number), a repeated key or
name, and an empty principle list are each a `ConstitutionError` saying "line N". `load_constitution("default")`
reads the one shipped with Bridle (`constitutions/default.yaml`, package data).
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from bridle.errors import DataError

TOP_KEYS = ("name", "description", "principles")
PRINCIPLE_KEYS = ("name", "critique_request", "revision_request")
REQUIRED = ("critique_request", "revision_request")
STR_TAG = "tag:yaml.org,2002:str"
BUILTIN = "default"
FORMAT_HINT = ("A constitution is YAML: `principles:`, a list whose items each have `critique_request` and "
               "`revision_request` (text) and optionally `name`; optional top-level `name` and `description`. "
               "docs/feedback/constitute.md shows one.")


class ConstitutionError(DataError):
    """A constitution file that cannot be used; `line` (1-based) is where, when known."""

    def __init__(self, message: str, *, source: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message, source=source,
                         hint=FORMAT_HINT)


@dataclass(frozen=True)
class Principle:
    """One principle: the request that asks for a critique of the last reply, and the one that asks to revise it."""

    name: str
    critique_request: str
    revision_request: str


@dataclass(frozen=True)
class Constitution:
    """Principles in file order; `text` is the file as read (its sha256 names the constitution in run settings)."""

    name: str
    description: str
    principles: tuple[Principle, ...]
    source: str
    text: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]


def builtin_path(name: str = BUILTIN) -> Path:
    """The path of a constitution shipped with Bridle (package data)."""
    return Path(str(resources.files("bridle.feedback").joinpath("constitutions", f"{name}.yaml")))


def load_constitution(path: str | Path) -> Constitution:
    """A constitution from a YAML file, or "default" for the one shipped with Bridle."""
    file = builtin_path() if str(path) == BUILTIN else Path(path).expanduser()
    if not file.is_file():
        raise ConstitutionError("no such file. Pass a YAML file, or `default` for the constitution shipped with "
                                "Bridle.", source=str(path))
    return parse_constitution(file.read_text(encoding="utf-8"), source=str(path))


def parse_constitution(text: str, *, source: str = "<constitution>") -> Constitution:
    """The constitution a YAML text describes; a `ConstitutionError` naming the line of the first problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ConstitutionError(f"not valid YAML: {e.problem or e.context}.", source=source,
                                line=mark.line + 1 if mark else None) from None
    if root is None:
        raise ConstitutionError("the file is empty.", source=source)
    top = _mapping(root, "the file", TOP_KEYS, source)
    if "principles" not in top:
        raise ConstitutionError('no "principles": the file needs a list of principles.', source=source,
                                line=_line(root))
    listed = top["principles"][1]
    if not isinstance(listed, yaml.SequenceNode):
        raise ConstitutionError(f'"principles" must be a list, got {_kind(listed)}.', source=source,
                                line=_line(listed))
    if not listed.value:
        raise ConstitutionError('"principles" is empty: a constitution needs at least one principle.',
                                source=source, line=_line(listed))
    principles, seen = [], {}
    for number, node in enumerate(listed.value, start=1):
        where = f"principle {number}"
        fields = _mapping(node, where, PRINCIPLE_KEYS, source)
        missing = [k for k in REQUIRED if k not in fields]
        if missing:
            raise ConstitutionError(f'{where} has no {" and no ".join(repr(k) for k in missing)}.', source=source,
                                    line=_line(node))
        values = {key: _text(value, f"{where}: {key!r}", source) for key, (_, value) in fields.items()}
        name = values.get("name", f"principle-{number}")
        if name in seen:
            raise ConstitutionError(f"{where} is named {name!r}, as principle {seen[name]} is; names must differ.",
                                    source=source, line=_line(fields["name"][1] if "name" in fields else node))
        seen[name] = number
        principles.append(Principle(name, values["critique_request"], values["revision_request"]))
    return Constitution(name=_text(top["name"][1], "'name'", source) if "name" in top else Path(source).stem,
                        description=_text(top["description"][1], "'description'", source)
                        if "description" in top else "",
                        principles=tuple(principles), source=source, text=text)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    return "nothing (null)" if tag == "null" else f"{tag} {node.value!r}"


def _mapping(node: yaml.Node, what: str, allowed: tuple[str, ...], source: str
             ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """The (key node, value node) of each key of a mapping node, refusing unknown, repeated and non-text keys."""
    if not isinstance(node, yaml.MappingNode):
        raise ConstitutionError(f"{what} must be a mapping of keys ({', '.join(allowed)}), got {_kind(node)}.",
                                source=source, line=_line(node))
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if not isinstance(name, str) or name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1) if isinstance(name, str) else []
            raise ConstitutionError(f"{what}: unknown key {name if name is not None else _kind(key)!r}"
                                    + (f"; did you mean {close[0]!r}?" if close else "")
                                    + f" Known keys: {', '.join(allowed)}.", source=source, line=_line(key))
        if name in out:
            raise ConstitutionError(f"{what}: key {name!r} appears twice (first on line {_line(out[name][0])}).",
                                    source=source, line=_line(key))
        out[name] = (key, value)
    return out


def _text(node: yaml.Node, what: str, source: str) -> str:
    """A scalar that YAML reads as text, not empty; anything else names its line."""
    if not (isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG):
        raise ConstitutionError(f"{what} must be text, got {_kind(node)} (quote it if it is meant as text).",
                                source=source, line=_line(node))
    if not node.value.strip():
        raise ConstitutionError(f"{what} is empty.", source=source, line=_line(node))
    return node.value.strip()
