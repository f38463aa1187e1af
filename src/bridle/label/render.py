"""Model text → HTML that shows markdown and code readably and can run nothing.

markdown-it (CommonMark) with raw HTML off escapes every tag in the text, so `<script>` and `<img onerror=…>` show as
the characters they are. Links, images and autolinks are switched off too: a response cannot make the annotator's
browser fetch or open anything, and its URLs stay visible as text. The page's Content-Security-Policy (no inline
script, nothing from other origins) is the second wall.
"""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

from bridle.data.chat import Prompt, conversation

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).disable(
    ["image", "link", "autolink", "reference"])


def markdown(text: str) -> Markup:
    """Safe HTML of one message's text."""
    return Markup(_MD.render(text))


def turns(prompt: Prompt) -> list[dict[str, Any]]:
    """A prompt as rendered turns [{role, html}]: text is one user turn, a conversation keeps its roles."""
    return [{"role": m["role"], "html": markdown(m["content"])} for m in conversation(prompt)]


def response_turns(response: Prompt) -> list[dict[str, Any]]:
    """A response as rendered turns: text is one assistant turn; message lists keep their roles."""
    if isinstance(response, str):
        return [{"role": "assistant", "html": markdown(response)}]
    return turns(response)
