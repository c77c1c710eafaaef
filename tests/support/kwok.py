"""Cues for the kwok stages in hack/cluster/kwok-stages.yaml: how a test tells a fake pod to finish."""

from __future__ import annotations

OUTCOME = "kwok.reasoning.dev/outcome"
EXIT_CODE = "kwok.reasoning.dev/exit-code"
TERMINATION_MESSAGE = "kwok.reasoning.dev/termination-message"
RUN_FOR = "kwok.reasoning.dev/run-for"


def finish_on_cue(
    outcome: str, *, termination_message: str = "", exit_code: int | None = None, run_for: str = ""
) -> dict[str, str]:
    """Pod annotations that make kwok end the pod with `outcome` (Succeeded or Failed)."""
    if outcome not in ("Succeeded", "Failed"):
        raise ValueError(f"outcome must be Succeeded or Failed, not {outcome!r}")
    annotations = {OUTCOME: outcome}
    if termination_message:
        annotations[TERMINATION_MESSAGE] = termination_message
    if exit_code is not None:
        annotations[EXIT_CODE] = str(exit_code)
    if run_for:
        annotations[RUN_FOR] = run_for
    return annotations
