"""Progress bar and log-interval helpers for the bundles."""

from __future__ import annotations

from collections.abc import Callable

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
        """Attach the bar to ``engine``."""

        def shown(output) -> dict[str, float]:
            values = loss_terms(output)
            return {k: values[k] for k in self.terms if k in values}

        ProgressBar(persist=self.persist).attach(engine, output_transform=shown)


def every_n_iterations(n: int) -> Callable:
    """Event filter for ``StatsHandler(iteration_log=...)``: log every ``n``-th iteration."""
    n = max(int(n), 1)

    def _filter(engine, event: int) -> bool:
        return event % n == 0

    return _filter
