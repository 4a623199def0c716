"""Errors the CLI turns into a clear message and exit code 2 (bad input) instead of a traceback."""


class InputError(Exception):
    """One or more problems with the user's inputs; each problem names the file, the row or id, and the fix."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def raise_if(problems: list[str]) -> None:
    """Raise every collected problem at once, so a user fixes a whole file in one pass."""
    if problems:
        raise InputError(problems)
