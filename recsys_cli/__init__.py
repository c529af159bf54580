"""recsys: turn a pretrained causal language model into a recommender (RecSysLLM)."""

import os
import sys

__version__ = "0.1.0"


def _interrupted(exc_type, exc, tb, _default=sys.excepthook):
    """Ctrl-C that no code caught (while `recsys` still imports its modules, before main() handles
    it): the CLI's one line and exit code 130 instead of a traceback. Anything else: as before."""
    if not issubclass(exc_type, KeyboardInterrupt):
        return _default(exc_type, exc, tb)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os.write(2, b"Interrupted (Ctrl-C).\n")
    os._exit(130)


if sys.excepthook is sys.__excepthook__:  # first thing (os and sys are loaded at start-up); never over another hook
    sys.excepthook = _interrupted

import atexit  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402


def _ignore_late_interrupts() -> None:
    """At interpreter exit, after everything ran: a Ctrl-C during the last teardown (freeing
    memory) would kill the process by signal; the work is done, so it is ignored."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


atexit.register(_ignore_late_interrupts)
