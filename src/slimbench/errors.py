"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class SlimbenchError(Exception):
    """Base class: the message is complete and fit to show to a user as is."""


class DatasetError(SlimbenchError):
    """Missing, corrupt or malformed dataset files."""


class ModelError(SlimbenchError):
    """Unknown model name or bad constructor arguments."""


class CheckpointError(SlimbenchError):
    """A checkpoint that cannot be loaded safely or does not fit its model."""


class ConfigError(SlimbenchError):
    """A configuration key or value that does not validate."""


class TrainingError(SlimbenchError):
    """Training cannot go on (non-finite loss, impossible settings)."""


class CompressionError(SlimbenchError):
    """A pruning or quantization step that cannot be done as asked."""


class ExportError(SlimbenchError):
    """An export that fails, or whose artifact does not behave like the model it came from."""
