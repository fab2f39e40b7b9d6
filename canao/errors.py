"""One error type for every user-facing failure: a cause and a fix, printed on one line."""


class CanaoError(Exception):
    """A failure the user can act on. The CLI prints ``error: <cause> (fix: <fix>)`` and exits 2."""

    def __init__(self, cause: str, fix: str = ""):
        self.cause = cause
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = " ".join(self.cause.split())
        if self.fix:
            text += f" (fix: {' '.join(self.fix.split())})"
        return text
