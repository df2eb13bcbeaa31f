"""The errors a user can act on: each message is one line naming what is wrong and, where
there are choices, the valid ones. Scripts print it and exit non-zero, without a traceback."""


class BnStudyError(Exception):
    """Base of every error the scripts report as one line."""


class ConfigError(BnStudyError, ValueError):
    """A config value, flag or study declaration is invalid."""


class DatasetError(BnStudyError):
    """A dataset cannot be found, prepared or read as an image classification dataset."""


class CheckpointError(BnStudyError):
    """A workdir's checkpoints cannot be restored."""


class WorkdirError(BnStudyError):
    """A workdir or sweep dir holds something that a run must not overwrite or mix with."""


class PeerError(BnStudyError):
    """Another process of a multi-host run failed or could not be reached."""
