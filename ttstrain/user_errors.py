"""One error surface for every command: an error the user can cause ends in one line and a non-zero exit.

A stage raises ValueError (a bad option, config or dataset row: `ttstrain.validation.InputError` names the
file, row and field), OSError (a missing or damaged file, a name that cannot be resolved offline), ImportError
(an optional dependency not installed, with the pip command) or runs out of memory; `report_user_errors`
prints that as `ttstrain <command>: error: <message>` on stderr and exits with status 1. The traceback is
shown when `TTSTRAIN_DEBUG=1` is set, and for every other exception (a bug) as Python shows it.

    from ttstrain.user_errors import report_user_errors
    with report_user_errors("eval-prm"):
        main(argv)
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

DEBUG_ENV = "TTSTRAIN_DEBUG"
EXIT_USER_ERROR = 1


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types a user's input, files, names or machine cause (the rest are bugs)."""
    types: list[type[BaseException]] = [ValueError, OSError, ImportError]
    try:
        import torch

        types.append(torch.OutOfMemoryError)
    except (ImportError, AttributeError):
        pass
    try:
        from safetensors import SafetensorError

        types.append(SafetensorError)
    except ImportError:
        pass
    return tuple(types)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (a checkpoint or hub error can span several)."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


@contextmanager
def report_user_errors(command: str):
    """Run a command's body; a user error becomes one line on stderr and exit status 1 (see the module docstring)."""
    try:
        yield
    except user_error_types() as exc:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        print(f"ttstrain {command}: error: {one_line(exc)} ({DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
