"""What every script shares: quiet logs, one-line errors for bad flags, and app.run."""

import importlib.util
import logging as python_logging
import os
import sys

from absl import app, flags, logging

from bn_study import errors, schema


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, '')
    if value and not value.isdigit():
        sys.exit(f'error: environment variable {name}={value!r} must be a whole number')
    return int(value) if value else None


def define_multihost_flags() -> None:
    """Flags (with environment fallbacks) that start a multi-process run."""
    flags.DEFINE_string('coordinator_address', os.environ.get('JAX_COORDINATOR_ADDRESS', ''),
                        'host:port of process 0 [env JAX_COORDINATOR_ADDRESS].')
    flags.DEFINE_integer('num_processes', _env_int('JAX_NUM_PROCESSES'),
                         'Processes in the run [env JAX_NUM_PROCESSES].')
    flags.DEFINE_integer('process_id', _env_int('JAX_PROCESS_ID'),
                         "This process's index, 0..num_processes-1 [env JAX_PROCESS_ID].")
    flags.DEFINE_bool('multihost_auto', False,
                      'Let JAX find the processes itself (TPU VM workers, Slurm).')


def initialize_multihost() -> None:
    """jax.distributed.initialize from the flags; before any other JAX call."""
    from bn_study.training import parallel  # JAX: only for the scripts that train
    f = flags.FLAGS
    parallel.initialize_distributed(f.coordinator_address, f.num_processes, f.process_id,
                                    f.multihost_auto)


def config_overrides(argv: list[str]) -> tuple[str, ...]:
    """The --config.a=b (or --config.a b) flags of a command line, to pass to workers."""
    found = []
    for i, arg in enumerate(argv):
        if arg.startswith('--config.'):
            found.append(arg if '=' in arg or i + 1 == len(argv) else f'{arg}={argv[i + 1]}')
    return tuple(found)


def config_module(config_spec: str):
    """The module and argument of a --config value 'path[:arg]' (for get_sweep and errors)."""
    path, _, arg = config_spec.partition(':')
    spec = importlib.util.spec_from_file_location('_bn_study_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, arg or None


def _load_config(argv: list[str]):
    """The config named on the command line, as --config=SPEC or --config SPEC."""
    for i, a in enumerate(argv):
        if a.startswith('--config='):
            spec = a[len('--config='):]
        elif a == '--config' and i + 1 < len(argv):
            spec = argv[i + 1]
        else:
            continue
        module, arg = config_module(spec)
        return module.get_config(arg) if arg else module.get_config()
    raise ValueError('no --config flag')


def unknown_key_message(argv: list[str]) -> str | None:
    """Names the first --config.a.b override whose key does not exist, and the valid keys."""
    try:
        config = _load_config(argv)
    except Exception:  # the config file itself is broken; absl's message will say so
        return None
    for a in argv:
        if a.startswith('--config.'):
            problem = schema.unknown_key(config, a[len('--config.'):].split('=', 1)[0])
            if problem:
                return f'{problem} (from {a})'
    return None


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        # A config file's get_config refusing its argument reaches here as config_flags'
        # ValueError, whose text is a whole traceback; its last line is the one to show.
        last = str(e).strip().splitlines()[-1]
        sys.exit(f'error: {last.split("ConfigError: ", 1)[1]}' if 'ConfigError: ' in last
                 else f'error: {e}')
    except (KeyError, AttributeError) as e:  # config_flags' error for an unknown key
        sys.exit(f'error: {unknown_key_message(argv) or e}')


def _not_orbax_info(record: python_logging.LogRecord) -> bool:
    """orbax logs a dozen INFO lines per checkpoint save; its warnings and errors stay."""
    return record.levelno > python_logging.INFO or f'{os.sep}orbax{os.sep}' not in record.pathname


def run(main) -> None:
    """app.run with one-line errors: bad flags and every errors.BnStudyError exit non-zero
    with one line."""
    logging.get_absl_handler().addFilter(_not_orbax_info)
    def guarded(argv):
        if len(argv) > 1:
            sys.exit(f'error: unexpected arguments: {" ".join(argv[1:])}')
        try:
            main(argv)
        except errors.BnStudyError as e:
            sys.exit(f'error: {e}')
    app.run(guarded, flags_parser=_parse_flags)

