"""The measured time of a model call, as an exponentially weighted mean."""

EWMA_WEIGHT = 0.1  # of the newest call


class ServiceTime:
    """Seconds a call takes (a float store is atomic under the GIL: no lock)."""

    def __init__(self, initial_s: float) -> None:
        self.seconds = max(initial_s, 0.0)

    def record(self, seconds: float) -> None:
        self.seconds += EWMA_WEIGHT * (seconds - self.seconds)
