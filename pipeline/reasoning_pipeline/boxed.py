"""The final answer of a solution: the content of its last `\\boxed{}`, as Qwen2.5-Math and Sky-T1 take it.

Pure text handling, no dependencies: the filter, the evaluator and the tiny world's generator share it.
"""

from __future__ import annotations

import re

BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")


def _closing_brace(text: str, opening: int) -> int | None:
    depth = 0
    for index in range(opening, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return None


def last_boxed(text: str) -> str | None:
    """The brace-matched content of the last \\boxed{…} (or \\fbox{…}); None when there is none."""
    for box in reversed(list(BOX_COMMAND.finditer(text))):
        opening = box.end()
        while opening < len(text) and text[opening].isspace():
            opening += 1
        if opening < len(text) and text[opening] == "{":
            closing = _closing_brace(text, opening)
            if closing is not None:  # an unclosed box does not count: try the one before it
                return text[opening + 1 : closing].strip()
    return None
