"""Domain errors. Only the CLI edge turns them into exit codes."""


class CmperfError(Exception):
    """Base class of every error cmperf reports to a user."""

    exit_code = 1


class SpecError(CmperfError):
    """Bad input: a file, key, value or option that is not what was expected (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class InfeasibleError(SpecError):
    """No configuration meets the request (an SLO that cannot be met); the message says the best
    achievable value. An input error like any other: exit code 2."""
