"""One generation at a time per app: making sound is CPU-bound, so a second
request while one runs is refused with a sentence saying why (409).

The slot is claimed and released on the event loop (no await between the
check and the claim, so two requests cannot both get it); the worker thread
only writes the progress counters.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.applications import Starlette


@dataclass
class GenerationSlot:
    model_id: str | None = None  # the model making sound now; None when idle
    what: str = ""  # "sounds" or "a download"
    done: int = 0
    total: int = 0
    started: float = 0.0

    @property
    def busy(self) -> bool:
        return self.model_id is not None

    def claim(self, model_id: str, what: str = "sounds") -> bool:
        """Take the slot (True), or False when a generation is running."""
        if self.busy:
            return False
        self.model_id, self.what, self.done, self.total, self.started = model_id, what, 0, 0, time.monotonic()
        return True

    def release(self) -> None:
        self.model_id = None

    def progress(self, done: int, total: int) -> None:
        """The core's progress callback (called from the worker thread)."""
        self.done, self.total = done, total

    def busy_message(self) -> str:
        if self.what == "a download":
            doing = "A download is being converted right now"
        else:
            doing = "Another generation is running right now"
            if self.total:
                doing += f" ({self.done} of {self.total} variations made)"
        return f"{doing}; wait a moment for it to finish, then try again."


def generation_slot(app: Starlette) -> GenerationSlot:
    """The app's slot, made on first use (lives in app.state)."""
    slot = getattr(app.state, "generation_slot", None)
    if slot is None:
        slot = app.state.generation_slot = GenerationSlot()
    return slot
