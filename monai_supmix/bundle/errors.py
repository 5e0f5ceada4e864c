"""One-line errors for bundle runs: bad input ends the run with the project's own message.

MONAI's bundle runner wraps every error of a config expression or component in
``RuntimeError("Failed to evaluate ConfigExpression ...")`` / ``"Failed to instantiate ..."``
with a source dump, so a clear message such as ``label x.png holds values [7] outside the
classes 0..2`` ends up 50-120 lines above the end of the output. The bundles call
:func:`install_error_handler` first thing in ``initialize``: from then on, an uncaught
error whose root cause is a *bad input* (a ``ValueError``, ``TypeError``,
``FileNotFoundError`` or ``KeyError`` raised by this package) prints two lines, the
project's message last, and exits with code 2. Anything else (a bug, an out-of-memory
error) keeps Python's full traceback. ``--debug True`` or ``MONAI_SUPMIX_DEBUG=1`` keeps
the traceback for bad input too.
"""

from __future__ import annotations

import atexit
import logging
import os
import shlex
import sys
import traceback
from types import TracebackType

__all__ = [
    "install_error_handler",
    "bad_input_error",
    "resume_hint",
    "BAD_INPUT_EXIT_CODE",
    "INTERRUPTED_EXIT_CODE",
    "DEBUG_ENV",
]

BAD_INPUT_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 130
DEBUG_ENV = "MONAI_SUPMIX_DEBUG"
_BAD_INPUT_TYPES = (ValueError, TypeError, FileNotFoundError, KeyError, NotADirectoryError, IsADirectoryError)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_installed = False
_ckpt_dir: str | None = None


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from, outermost first."""
    chain: list[BaseException] = []
    while error is not None and all(error is not e for e in chain):
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return chain


def bad_input_error(error: BaseException) -> BaseException | None:
    """The innermost bad-input error raised by this package in ``error``'s chain, else ``None``.

    E.g. for MONAI's ``RuntimeError("Failed to instantiate ...")`` caused by our ``ValueError("cannot read
    image file ...")`` caused by PIL's ``OSError``, it is our ``ValueError``.
    """
    found = None
    for link in _chain(error):
        if not isinstance(link, _BAD_INPUT_TYPES):
            continue
        frames = traceback.extract_tb(link.__traceback__)
        if frames and os.path.abspath(frames[-1].filename).startswith(_PACKAGE_DIR):
            found = link
    return found


def _message(error: BaseException) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split())  # one line


def resume_hint(ckpt_dir: str | None) -> str:
    """One line: where the last checkpoint is and the command that continues the run."""
    from monai_supmix.handlers.checkpointing import latest_checkpoint

    latest = latest_checkpoint(ckpt_dir) if ckpt_dir and os.path.isdir(ckpt_dir) else None
    if latest is None:
        return "Interrupted before the first checkpoint was saved; start the run again to train from scratch."
    args = [a for a in sys.argv[1:]]
    while "--resume" in args:  # drop an earlier --resume and its value
        i = args.index("--resume")
        del args[i : i + 2]
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "monai.bundle", *args, "--resume", "True"])
    return f"Interrupted: the last checkpoint is {latest}; continue with: {command}"


def install_error_handler(debug: bool = False, ckpt_dir: str | None = None) -> bool:
    """Make bad input end the process with a one-line message and exit code 2 (idempotent).

    Also turns Ctrl-C (``KeyboardInterrupt``) into one line that names the last checkpoint
    and the ``--resume True`` command (exit code 130, as shells report Ctrl-C).

    Args:
        debug: keep Python's full traceback (also with the environment variable ``MONAI_SUPMIX_DEBUG=1``).
        ckpt_dir: the run's checkpoint folder, for the resume hint after Ctrl-C.

    Returns:
        True when the handler is installed.
    """
    global _installed, _ckpt_dir
    _ckpt_dir = ckpt_dir or _ckpt_dir
    if debug or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "False"):
        return False
    if _installed:
        return True
    previous = sys.excepthook

    def handler(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if isinstance(error, KeyboardInterrupt):
            _leave(resume_hint(_ckpt_dir), INTERRUPTED_EXIT_CODE)
        root = bad_input_error(error)
        if root is None:
            previous(kind, error, tb)
            return
        _leave(
            f"monai_supmix: the run stopped on bad input (set {DEBUG_ENV}=1 or --debug True for the traceback)\n"
            f"ERROR: {_message(root)}",
            BAD_INPUT_EXIT_CODE,
        )

    sys.excepthook = handler
    _quiet_interrupt_logs()
    _installed = True
    return True


class _InterruptLogFilter(logging.Filter):
    """Drop what Ignite and MONAI log on Ctrl-C: the excepthook prints the one useful line instead.

    On ``KeyboardInterrupt`` Ignite logs "Engine run is terminating due to exception: " (the
    interrupt's empty text) and MONAI's ``StatsHandler`` logs the exception with its traceback
    (``logger.exception``), 20 lines before the resume hint.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None and issubclass(record.exc_info[0], KeyboardInterrupt):
            return False
        return str(record.msg).rstrip() not in ("Engine run is terminating due to exception:", "Exception:")


def _quiet_interrupt_logs() -> None:
    """Add :class:`_InterruptLogFilter` to every logging handler configured so far (the bundle's logging.conf)."""
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for log_handler in logger.handlers:
            if not any(isinstance(f, _InterruptLogFilter) for f in log_handler.filters):
                log_handler.addFilter(_InterruptLogFilter())


def _leave(message: str, code: int) -> None:
    try:  # end a progress bar's line first, so that the message starts a line of its own
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", [])):
            bar.close()
    except Exception:  # noqa: BLE001 - leaving anyway; the message matters more than the bar
        pass
    sys.stdout.flush()
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    # run the atexit hooks (e.g. the torch.distributed tear-down), then leave with our own exit
    # code and without the interpreter's finalization
    atexit._run_exitfuncs()
    os._exit(code)
