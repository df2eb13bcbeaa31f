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


def check_choice(path: str, value, choices) -> None:
    """Raises ConfigError unless `value` is one of `choices` (a tuple, or a table's keys)."""
    if value not in choices:
        raise ConfigError(f'config.{path}={value!r} is not valid; choose one of: '
                          f'{", ".join(map(str, choices))}')
