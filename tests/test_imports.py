"""The import rules, each checked in a fresh interpreter (its sys.modules clean):

1. Reading records and writing a report imports neither JAX, Flax, orbax nor TensorFlow, and
   scripts/report.py works where they cannot be imported at all.
2. A study config file (configs/*.py, configs/paper/*.py) imports only light modules.
3. The networks (bn_study.nn) never import from training (bn_study.training).

A failure names the chain of modules that brought the forbidden one in.
"""

import ast
import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

from bn_study.analysis import report_spec
from bn_study.paths import REPO
from bn_study.studies import sweep_index
from configs import default
from tests.test_report import write_run

# The heavy stack: JAX and what runs on it, and TensorFlow (TFDS and TensorBoard pull it in).
HEAVY = ('jax', 'jaxlib', 'flax', 'optax', 'orbax', 'tensorflow', 'tensorflow_datasets')

# Prepended to every probe. Python's PathFinder is wrapped so that it records, for each
# watched package, the chain of modules whose import first asked for it (the module-level
# frames on the stack then); with BLOCK it finds no watched package at all, as if it were not
# installed (import raises ModuleNotFoundError, importlib.util.find_spec gives None).
_RECORDER = textwrap.dedent('''
    import importlib.abc, json, sys
    from importlib.machinery import PathFinder

    WATCHED = tuple(json.loads(sys.argv[1]))
    BLOCK = json.loads(sys.argv[2])
    CHAINS = {}

    def _chain(name):
        frames, frame = [], sys._getframe(2)
        while frame is not None:
            module = frame.f_globals.get('__name__', '?')
            if frame.f_code.co_name == '<module>' and not module.startswith('importlib'):
                if not frames or frames[-1] != module:
                    frames.append(module)
            frame = frame.f_back
        return [*reversed(frames), name]

    class _Watch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            watched = [w for w in WATCHED if name == w or name.startswith(w + '.')]
            if watched and watched[0] not in CHAINS:
                CHAINS[watched[0]] = _chain(name)
            if watched and BLOCK:
                return None
            return PathFinder.find_spec(name, path, target)

        def invalidate_caches(self):
            PathFinder.invalidate_caches()

    sys.meta_path[:] = [_Watch() if f is PathFinder else f for f in sys.meta_path]
    sys.argv[1:3] = []

    def loaded(prefixes):
        """{package: chain} for each of `prefixes` now in sys.modules."""
        return {p: CHAINS.get(p, ['?', p]) for p in prefixes
                if any(m == p or m.startswith(p + '.') for m in sys.modules)}
''')


def _probe(code: str, *args: str, watched=HEAVY, block: bool = False,
           cwd: str = REPO) -> dict:
    """Runs `code` in a fresh interpreter after _RECORDER, with `args` as sys.argv[1:];
    `code` prints one JSON line last, which is returned."""
    run = subprocess.run(
        [sys.executable, '-c', _RECORDER + textwrap.dedent(code), json.dumps(watched),
         json.dumps(block), *args], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _chains(found: dict) -> str:
    return '; '.join(f'{package} via {" -> ".join(chain)}' for package, chain in found.items())


def test_the_probe_names_the_chain_and_blocks_as_if_not_installed():
    found = _probe('''
        import csv
        print(json.dumps(loaded(WATCHED)))
    ''', watched=('csv',))
    assert found == {'csv': ['__main__', 'csv']}
    blocked = _probe('''
        import importlib.util
        try:
            import jax
            failed = False
        except ModuleNotFoundError:
            failed = True
        print(json.dumps([failed, importlib.util.find_spec('tensorflow') is None]))
    ''', block=True)
    assert blocked == [True, True]


@pytest.fixture(scope='module')
def sweep_dir(tmp_path_factory):
    """A small sweep (two placements, two seeds, diagnostics, a claim), written by the
    training code's own record writer in this (test) process."""
    d = str(tmp_path_factory.mktemp('sweep'))
    for seed in (0, 1):
        for position, accuracy in (('none', 0.9), ('after_act', 0.95)):
            write_run(d, {'model.bn_position': position, 'seed': seed}, accuracy + seed / 100)
    claim = report_spec.Claim('a paper', '0.9 vs 0.8', {'model.bn_position': 'after_act'},
                              {'model.bn_position': 'none'})
    sweep_index.record_sweep(d, default.get_config(), [],
                             report_spec.ReportSpec(claims=(claim,)).to_json())
    return d


def test_reading_records_and_writing_a_report_imports_no_heavy_module(sweep_dir, tmp_path):
    found = _probe('''
        import importlib, pkgutil
        import bn_study.records
        import bn_study.analysis
        for module in pkgutil.iter_modules(bn_study.analysis.__path__):
            importlib.import_module(f'bn_study.analysis.{module.name}')
        from bn_study.analysis import report, results
        bn_study.records.read_summary(sys.argv[1])
        results.load_runs(sys.argv[1])
        written = report.write_report(sys.argv[1], sys.argv[2])
        assert written.path.endswith('REPORT.md') and written.verdict_lines
        print(json.dumps(loaded(WATCHED)))
    ''', sweep_dir, str(tmp_path / 'report'))
    assert (tmp_path / 'report' / 'REPORT.md').exists()
    assert not found, f'the report imported {_chains(found)}'


def test_the_report_script_runs_where_jax_flax_orbax_and_tensorflow_are_missing(
        sweep_dir, tmp_path):
    out = tmp_path / 'report'
    found = _probe('''
        import runpy
        script = sys.argv[1]
        sys.argv = [script, *sys.argv[2:]]
        try:
            runpy.run_path(script, run_name='__main__')
        except SystemExit as e:
            assert not e.code, e.code
        print(json.dumps({'loaded': loaded(WATCHED), 'asked': CHAINS}))
    ''', os.path.join(REPO, 'scripts', 'report.py'), f'--sweep_dir={sweep_dir}',
        f'--report_dir={out}', block=True)
    text = (out / 'REPORT.md').read_text()
    assert text.startswith(f'# Report: {os.path.normpath(sweep_dir)}')
    assert '| a paper | bn_position=after_act beats bn_position=none |' in text
    # Libraries may look for them (etils looks for TensorFlow) and do without.
    assert not found['loaded'], _chains(found['loaded'])


def _config_files() -> list[str]:
    """The files a --config flag can name: those defining get_config."""
    return sorted(os.path.relpath(p, REPO) for pattern in ('configs/*.py', 'configs/paper/*.py')
                  for p in glob.glob(os.path.join(REPO, pattern))
                  if 'def get_config(' in open(p).read())


def test_every_study_config_file_is_found():
    files = _config_files()
    assert {'configs/default.py', 'configs/seed_question.py',
            'configs/paper/ioffe2015_mnist.py'} <= set(files), files


@pytest.mark.parametrize('config_file', _config_files())
def test_a_study_config_imports_only_light_modules(config_file):
    """Loaded by path as config_flags loads it; get_config, get_tuning (tuned variants) or
    get_sweep, and get_report called for each variant the file has (the paper configs:
    configs/paper/common.VARIANTS)."""
    found = _probe('''
        import importlib.util
        path = sys.argv[1]
        spec = importlib.util.spec_from_file_location('_config_under_test', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if hasattr(module, 'VARIANTS'):
            variants = list(module.VARIANTS)
        elif hasattr(module, 'common'):
            variants = list(module.common.VARIANTS)
        else:
            variants = ['']
        called = []
        for variant in variants:
            arg = variant or None
            tuned = hasattr(module, 'get_tuning') and module.get_tuning(arg) is not None
            for name in ('get_config', 'get_tuning' if tuned else 'get_sweep', 'get_report'):
                if hasattr(module, name):
                    getattr(module, name)(arg)
                    called.append(f'{name}({arg!r})')
        print(json.dumps({'called': called, 'heavy': loaded(WATCHED)}))
    ''', os.path.join(REPO, config_file))
    assert 'get_config(None)' in found['called']
    if config_file.startswith('configs/paper/'):
        called = set(found['called'])
        assert {"get_config('cpu')", "get_report('cpu')"} <= called, called
        assert {"get_sweep('cpu')", "get_tuning('cpu')"} & called, called
    assert not found['heavy'], f'{config_file} imports {_chains(found["heavy"])}'


def _nn_files() -> list[str]:
    return sorted(glob.glob(os.path.join(REPO, 'bn_study', 'nn', '**', '*.py'), recursive=True))


def _imported_modules(source: str, package: str) -> list[str]:
    """Every module an import statement in `source` names (and, for `from m import n`, also
    m.n), absolute: relative ones resolved against `package`, the source's package."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                parent = '.'.join(parts[:len(parts) - node.level + 1])
                base = f'{parent}.{base}' if base else parent
            found.append(base)
            found.extend(f'{base}.{alias.name}' for alias in node.names)
    return found


def test_no_network_module_imports_from_training_in_its_source():
    assert _nn_files()
    offending = {}
    for path in _nn_files():
        package = os.path.relpath(os.path.dirname(path), REPO).replace(os.sep, '.')
        names = [m for m in _imported_modules(open(path).read(), package)
                 if m == 'bn_study.training' or m.startswith('bn_study.training.')]
        if names:
            offending[os.path.relpath(path, REPO)] = names
    assert not offending, offending


def test_the_static_check_sees_every_form_of_import():
    source = textwrap.dedent('''
        import bn_study.training.loop
        from bn_study import training
        from ..training import data
        from . import norms
        def f():
            from bn_study.training.catalog import EVAL_STATS
    ''')
    found = _imported_modules(source, 'bn_study.nn')
    assert {'bn_study.training.loop', 'bn_study.training', 'bn_study.training.data',
            'bn_study.nn.norms', 'bn_study.training.catalog'} <= set(found), found


def test_importing_every_network_module_loads_nothing_from_training():
    found = _probe('''
        import importlib, pkgutil
        import bn_study.nn
        names = [m.name for m in pkgutil.walk_packages(bn_study.nn.__path__, 'bn_study.nn.')]
        for name in names:
            importlib.import_module(name)
        print(json.dumps({'modules': names, 'training': loaded(WATCHED), 'loaded': sorted(
            m for m in sys.modules if m.startswith('bn_study.training'))}))
    ''', watched=('bn_study.training',))
    assert 'bn_study.nn.norms' in found['modules']
    assert not found['training'], (f'bn_study.nn imports {_chains(found["training"])} '
                                   f'(loaded: {", ".join(found["loaded"])})')
