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


class WriteError(SpecError):
    """A report or calibrated file could not be written. Exit code 2 when the destination itself
    cannot take it (permission, read-only, not a folder: choose another), 1 when the environment
    failed (disk full, quota, I/O error: the same command may succeed later)."""

    #: errno values that say the environment, not the destination chosen, failed.
    ENVIRONMENT = frozenset({"ENOSPC", "EDQUOT", "EIO", "EFBIG", "ENOMEM"})

    def __init__(self, what: str, path, exc: OSError | ValueError):
        import errno
        import os

        from cmperf.text import safe_text

        code = getattr(exc, "errno", None)
        name = errno.errorcode.get(code or 0, "")
        reason = (os.strerror(code) if code else str(exc)) or type(exc).__name__
        super().__init__(f"cannot write the {what} to {safe_text(path)}: {reason[:1].lower() + reason[1:]}")
        self.exit_code = 1 if name in self.ENVIRONMENT else 2
