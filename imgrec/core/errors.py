"""Typed errors: every face turns these into a clear message, never a traceback."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type name when it has none), for
    messages that quote a library's error without its traceback-sized text."""
    text = str(exc).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)[:limit]


class ImgrecError(Exception):
    """Base of every error a user can cause or fix."""


class SettingsError(ImgrecError):
    """An ``IMGREC_*`` variable holds a value of the wrong kind."""


class ImageError(ImgrecError):
    """An upload is not an image we accept; the message says what was received and expected."""


class UnsupportedFormatError(ImageError):
    """The content is not one of the accepted image formats (as opposed to a broken accepted one)."""


class ModelError(ImgrecError):
    """A model is missing, corrupt, or does not match its model card."""


class WeightsFallbackWarning(UserWarning):
    """Pretrained weights were asked for but could not be had; the model starts from random weights."""


class StoreError(ImgrecError):
    """The prediction log could not be written or read."""
