"""Load a user's function from "package.module:function" or "path/to/file.py:function": reward functions
(`bridle.feedback.sources`) and rule judges (`bridle.feedback.judges`) alike."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from bridle.errors import ConfigError

FUNCTION_HOW = ('Write a reward function as "package.module:function" (importable) or "path/to/file.py:function"; '
                "it is called as fn(prompts=[...], completions=[...], **columns) with each dataset column as a "
                "list, and returns one float (or None) per completion.")


def load_function(spec: str) -> Any:
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ConfigError(f'reward function "{spec}" has no ":function" part.\n{FUNCTION_HOW}')
    try:
        if target.endswith(".py") or "/" in target or "\\" in target:
            path = Path(target).expanduser()
            if not path.is_file():
                raise ConfigError(f'reward function "{spec}": no such file {path}.\n{FUNCTION_HOW}')
            module_spec = importlib.util.spec_from_file_location(f"bridle_reward_{path.stem}", path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot import {path} as Python")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_spec.name] = module  # so dataclasses / pickling inside the file work
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as e:  # ImportError, SyntaxError, or anything the module raises while importing
        raise ConfigError(f'cannot load reward function "{spec}": {type(e).__name__}: {e}\n{FUNCTION_HOW}') from e
    fn = getattr(module, name, None)
    if not callable(fn):
        what = "is not callable" if fn is not None else f"is not defined in {target}"
        raise ConfigError(f'reward function "{spec}": "{name}" {what}.\n{FUNCTION_HOW}')
    return fn
