"""The final answer of a solution: the content of its last `\\boxed{}`, as Qwen2.5-Math and Sky-T1 take it.

Pure text handling, no dependencies: the filter, the evaluator and the tiny world's generator share it.
"""

from __future__ import annotations

import re

BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")


def _closing_braces(text: str) -> dict[int, int]:
    """Each '{' that is closed, to its matching '}': one pass, so a response of thousands of unclosed
    boxes costs what its length does (a scan per box was quadratic: 215 s at 200 KB)."""
    closing: dict[int, int] = {}
    open_at: list[int] = []
    for index, char in enumerate(text):
        if char == "{":
            open_at.append(index)
        elif char == "}" and open_at:
            closing[open_at.pop()] = index
    return closing


def last_boxed(text: str) -> str | None:
    """The brace-matched content of the last \\boxed{…} (or \\fbox{…}); None when there is none."""
    boxes = list(BOX_COMMAND.finditer(text))
    if not boxes:
        return None
    closing = _closing_braces(text)
    for box in reversed(boxes):
        opening = box.end()
        while opening < len(text) and text[opening].isspace():
            opening += 1
        if opening < len(text) and text[opening] == "{" and opening in closing:
            # an unclosed box does not count: try the one before it
            return text[opening + 1 : closing[opening]].strip()
    return None
