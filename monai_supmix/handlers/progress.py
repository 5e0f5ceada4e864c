"""Progress bar and log-interval helpers for the bundles."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from ignite.engine import Events
from ignite.handlers import ProgressBar

from monai_supmix.engines.utils import loss_terms

__all__ = ["TrainingProgressBar", "every_n_iterations"]


class TrainingProgressBar:
    """Ignite's tqdm :class:`~ignite.handlers.ProgressBar` showing the main loss terms.

    A thin adapter so that it can sit in a MONAI ``train_handlers`` list (which calls
    ``attach(engine)`` with no further arguments).

    Args:
        terms: loss terms shown next to the bar.
        persist: keep the bar of each finished epoch on screen.
    """

    def __init__(self, terms: tuple[str, ...] = ("loss", "unsupervised_loss", "discriminator_accuracy"), persist: bool = True):
        self.terms = terms
        self.persist = persist

    def attach(self, engine) -> None:
        """Attach the bar to ``engine``; while it runs, console log lines are written above the bar."""

        def shown(output) -> dict[str, float]:
            values = loss_terms(output)
            return {k: values[k] for k in self.terms if k in values}

        ProgressBar(persist=self.persist).attach(engine, output_transform=shown)
        engine.add_event_handler(Events.STARTED, lambda e: _redirect_console_logs(True))
        engine.add_event_handler(Events.COMPLETED, lambda e: _redirect_console_logs(False))
        engine.add_event_handler(Events.EXCEPTION_RAISED, _restore_and_raise)


class _TqdmStream:
    """A console stream whose writes go through ``tqdm.write``, so they do not break a progress bar."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        from tqdm import tqdm

        if text.strip():
            tqdm.write(text.rstrip("\n"), file=self.stream)

    def flush(self) -> None:
        self.stream.flush()


def _redirect_console_logs(on: bool) -> None:
    """Send the root logger's console handlers through (or back from) :class:`_TqdmStream`."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
            continue
        if on and handler.stream in (sys.stdout, sys.stderr):
            handler.setStream(_TqdmStream(handler.stream))
        elif not on and isinstance(handler.stream, _TqdmStream):
            handler.setStream(handler.stream.stream)


def _restore_and_raise(engine, error: Exception) -> None:
    _redirect_console_logs(False)
    raise error


def every_n_iterations(n: int) -> Callable:
    """Event filter for ``StatsHandler(iteration_log=...)``: log every ``n``-th iteration."""
    n = max(int(n), 1)

    def _filter(engine, event: int) -> bool:
        return event % n == 0

    return _filter
