"""One error type for problems the user can fix, and the CLI wrapper that turns it into one line + exit 2."""
from __future__ import annotations

import sys
from typing import Callable, Sequence


class UserError(Exception):
    """Bad input (missing file, foreign checkpoint, empty folder...): reported as one line, never a traceback."""


EXIT_USAGE = 2


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI entry point; a UserError becomes `error: <message>` on stderr and exit code 2."""
    try:
        return main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
