"""The mean teacher as one component of the trainer: an EMA copy of the student (Ignite's ``EMAHandler``)."""

from __future__ import annotations

from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler
from torch import nn

from monai_supmix.utils.distributed import unwrap_module

__all__ = ["MeanTeacher"]


class MeanTeacher:
    """An exponential-moving-average teacher of the student, updated after every iteration.

    Args:
        decay: EMA decay after warm-up (teacher = decay · teacher + (1 − decay) · student).
        warmup_iterations: iterations over which Ignite's EMA momentum warms up linearly from 1
            (the teacher copies the student) to ``1 − decay``; 0 disables the warm-up.
        network: module to hold the teacher (its weights are initialised from the student);
            ``None``: Ignite deep-copies the student.

    Raises:
        ValueError: for ``decay`` outside (0, 1) or a negative ``warmup_iterations``.
    """

    def __init__(self, decay: float = 0.99, warmup_iterations: int = 0, network: nn.Module | None = None) -> None:
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay!r}.")
        if int(warmup_iterations) < 0:
            raise ValueError(f"ema warmup_iterations must be >= 0, got {warmup_iterations!r}.")
        self.decay = float(decay)
        self.warmup_iterations = int(warmup_iterations)
        self.network = network
        self.handler: EMAHandler | None = None

    def attach(self, engine: Engine, student: nn.Module) -> nn.Module:
        """Create the teacher from ``student`` and update it on ``engine``'s ``ITERATION_COMPLETED``.

        Call it before any other handler is attached, so that checkpoints and validation
        always see a teacher that has followed the iteration's update.

        Returns:
            the teacher module (frozen, in eval mode).
        """
        warmup = (
            {"momentum_warmup": 1.0 - 1e-6, "warmup_iters": self.warmup_iterations} if self.warmup_iterations else {}
        )
        self.handler = EMAHandler(student, momentum=1.0 - self.decay, **warmup)
        if self.network is not None:
            self.network.load_state_dict(unwrap_module(student).state_dict())
            for param in self.network.parameters():
                param.requires_grad_(False)
            self.network.eval()
            self.handler.ema_model = self.network
        self.handler.attach(engine, name="ema_momentum", event=Events.ITERATION_COMPLETED)
        return self.handler.ema_model
