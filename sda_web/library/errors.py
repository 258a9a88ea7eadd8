"""The library's errors about sounds: each message is one sentence a user can act on."""


class SoundError(ValueError):
    """A sound operation that cannot be done; the message says what and why."""


class UnknownSound(SoundError):
    """No generated sound has that id."""
