"""Progress bar and log-interval helpers for the bundles."""

from __future__ import annotations

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
        """Attach the bar to ``engine``; while it runs, console log lines are written above the bar.

        The redirection is tqdm's own :func:`tqdm.contrib.logging.logging_redirect_tqdm`, entered
        when the engine starts and left when it completes or raises.
        """
        from tqdm.contrib.logging import logging_redirect_tqdm

        def shown(output) -> dict[str, float]:
            values = loss_terms(output)
            return {k: values[k] for k in self.terms if k in values}

        redirect = {}

        def start(_engine) -> None:
            redirect["context"] = logging_redirect_tqdm()
            redirect["context"].__enter__()

        def stop(_engine, *_) -> None:
            context = redirect.pop("context", None)
            if context is not None:
                context.__exit__(None, None, None)

        def stop_and_raise(_engine, error: Exception) -> None:
            stop(_engine)
            raise error

        ProgressBar(persist=self.persist).attach(engine, output_transform=shown)
        engine.add_event_handler(Events.STARTED, start)
        engine.add_event_handler(Events.COMPLETED, stop)
        engine.add_event_handler(Events.EXCEPTION_RAISED, stop_and_raise)


def every_n_iterations(n: int) -> Callable:
    """Event filter for ``StatsHandler(iteration_log=...)``: log every ``n``-th iteration."""
    n = max(int(n), 1)

    def _filter(engine, event: int) -> bool:
        return event % n == 0

    return _filter
