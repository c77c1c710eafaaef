"""The exceptions a stage raises when it cannot finish: the run fails with the message in its summary.

Whether the operator tries the stage again depends on which: a `StageError` is permanent (bad input or
spec: a missing file, a record of the wrong shape, a refused API key, too little data for one optimizer
step), so a new attempt would fail the same way; a `TransientStageError` may pass on a later attempt (an
endpoint not up yet, requests still failing after their retries). Any other exception, and a process
that dies without a summary, counts as transient.
"""


class StageError(Exception):
    """A stage cannot finish, and another attempt on the same input would not either; the message names
    the record, field or file at fault."""


class TransientStageError(StageError):
    """A stage cannot finish now, but a later attempt may: the message says what was unavailable."""
