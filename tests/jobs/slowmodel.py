"""A BMI model shipped inside a realization dataset (importable from the job directory): the
pass-through model, slowed down so that a run lasts long enough to be cancelled or killed."""
import time

from dmod.services.worker.models.passthrough import PassThrough


class Slow(PassThrough):
    def _advance(self, dt: float) -> None:
        time.sleep(0.25)
        super()._advance(dt)
