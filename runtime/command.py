"""The CLI wrapper every command shares: a UserError becomes one line and exit 2, and a stop signal leaves no
temporary behind.

SIGTERM and SIGHUP behave like Ctrl-C (the stack unwinds, so every staged output is dropped), and any temporary
a thread was still writing is removed on the way out.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable, Sequence

from .atomic import remove_temporaries
from .errors import UserError


class Terminated(KeyboardInterrupt):
    """A termination signal, raised in the main thread so that cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


EXIT_USAGE = 2
_STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)


def _raise_terminated(signum, _frame):
    raise Terminated(signum)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI entry point; a UserError becomes `error: <message>` on stderr and exit code 2; Ctrl-C, SIGTERM
    and SIGHUP leave no temporary file behind and exit with 128 + the signal number."""
    in_main = threading.current_thread() is threading.main_thread()  # signal handlers can only go there
    previous = {s: signal.signal(s, _raise_terminated) for s in _STOP_SIGNALS} if in_main else {}
    try:
        return main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        print(f"error: {'interrupted' if signum == signal.SIGINT else 'terminated'}", file=sys.stderr)
        return 128 + signum
    finally:
        remove_temporaries()
        for s, handler in previous.items():
            signal.signal(s, handler)
