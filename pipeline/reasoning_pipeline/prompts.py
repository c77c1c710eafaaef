"""The published prompt templates (SkyThought's task files), one function per dataset family."""

from __future__ import annotations

NUMINA_TEMPLATE = "Return your final response within \\boxed{{}}. {problem}"

APPS_STDIN_PREFIX = (
    "Generate an executable Python function generated from the given prompt. The function should take "
    "stdin as input and print the output. Simply call the function after the definition."
)
APPS_CALL_BASED_PREFIX = (
    "Generate an executable Python function generated from the given prompt. Return the function body "
    "without invoking it at the final solution."
)


def numina_prompt(problem: str) -> str:
    return NUMINA_TEMPLATE.format(problem=problem)


def apps_prompt(question: str, starter_code: str, call_based: bool) -> str:
    if call_based:
        return f"{APPS_CALL_BASED_PREFIX}{question}\n{starter_code}".rstrip() + "\n"
    return f"{APPS_STDIN_PREFIX}{question}"


def taco_prompt(question: str, starter_code: str, call_based: bool) -> str:
    prompt = f"\nQUESTION:\n{question}"
    if starter_code:
        prompt += f"\n{starter_code}"
    prompt += "\nUse Call-Based format" if call_based else "\nUse Standard Input format"
    return prompt + "\nANSWER:\n"
