"""The errors of ``sdenv image``: each message says what failed and the fix."""

from __future__ import annotations

from sdenv.errors import SdenvError, UsageError


class ImageError(SdenvError):
    """An image could not be built, tested or tagged; the message says why and the fix."""


class EngineUnreachable(ImageError):
    pass


class BaseImageMissing(ImageError):
    pass


class PythonMismatch(UsageError):
    pass


class LockStale(UsageError):
    pass


class SmokeFailed(ImageError):
    pass
