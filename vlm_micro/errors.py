"""Exception types of vlm-micro.

Every error that a user can cause derives from :class:`VlmMicroError`. Its message is
one line that names the file, key or value and says what to do next; the CLI prints it
without a traceback.
"""


class VlmMicroError(Exception):
    """Base class for errors caused by inputs, configuration or environment."""


class ImageReadError(VlmMicroError):
    """An image file cannot be read or has a layout the reader does not support."""


class ConfigError(VlmMicroError):
    """A configuration file, sample sheet or vocabulary is invalid."""


class ModelLoadError(VlmMicroError):
    """A model spec cannot be resolved or its weights cannot be loaded."""


class AnnotationError(VlmMicroError):
    """An annotation table or folder cannot be used for training or evaluation."""


class OutputError(VlmMicroError):
    """An output folder cannot be written (read-only, full disk, locked by another run)."""
