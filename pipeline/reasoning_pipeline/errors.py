"""The one exception a stage raises on bad input: the run fails with this message in its summary."""


class StageError(Exception):
    """A stage cannot finish; the message names the record, field or file at fault."""
