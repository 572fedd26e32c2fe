"""How the CLI fails: one ``error: ...`` line on stderr and an exit code, never a traceback.

Exit codes: 0 success, 1 the operation failed (OSCAR said no, a file is missing, an
FDL is invalid, the cluster is down), 2 the command line itself is wrong (as argparse
does), 130 interrupted. Scripts can rely on these.
"""

from __future__ import annotations

import requests
import yaml

from bridge.oscar.errors import OscarError
from bridge.oscar.fdl import FdlError

from . import output

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """Options that do not fit together: reported like argparse's own errors (exit 2)."""


# What a command may raise for a reason the user can act on; anything else is a bug
# and still gets one line (with its type) rather than a traceback.
EXPECTED = (OscarError, FdlError, OSError, ValueError, requests.RequestException, yaml.YAMLError)


def report(exc: BaseException) -> int:
    """Print ``exc`` for a person and return the exit code it deserves."""
    if isinstance(exc, KeyboardInterrupt):
        output.error("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, UsageError):
        output.error(str(exc))
        return EXIT_USAGE
    if isinstance(exc, FdlError):
        output.error("invalid service definition:\n" + str(exc) if len(exc.errors) > 1 else str(exc))
        return EXIT_FAILURE
    if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException):
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        output.error(f"{exc.strerror or exc}{where}")
        return EXIT_FAILURE
    if isinstance(exc, requests.RequestException):
        output.error(f"network error: {type(exc).__name__}")
        return EXIT_FAILURE
    if isinstance(exc, EXPECTED):
        output.error(str(exc) or type(exc).__name__)
        return EXIT_FAILURE
    output.error(f"unexpected {type(exc).__name__}: {exc}")
    return EXIT_FAILURE
