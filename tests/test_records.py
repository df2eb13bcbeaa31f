"""Records written before a config key was renamed or added still load, resume and compare."""

import json

from bn_study import records
from bn_study.analysis import results
from configs import default


def _legacy_tree() -> dict:
    """The default config as a record made before norm.stats_scope was named batch_stats."""
    tree = json.loads(default.get_config().to_json())
    tree['norm']['batch_stats'] = tree['norm'].pop('stats_scope')
    return tree


def test_a_renamed_key_loads_under_its_current_name():
    legacy = _legacy_tree()
    upgraded = records.upgrade_config(legacy)
    assert upgraded['norm']['stats_scope'] == legacy['norm']['batch_stats']
    assert 'batch_stats' not in upgraded['norm']
    assert 'batch_stats' in legacy['norm']  # the caller's tree is left as read


def test_a_legacy_record_matches_the_current_config():
    assert records.config_differences(_legacy_tree(), default.get_config()) == []
    changed = _legacy_tree()
    changed['norm']['batch_stats'] = 'ghost'
    assert records.config_differences(changed, default.get_config()) == ['norm.stats_scope']


def test_reports_read_legacy_records_under_the_new_key(tmp_path):
    workdir = tmp_path / 'old_run'
    workdir.mkdir()
    (workdir / records.CONFIG_FILE).write_text(json.dumps(_legacy_tree()))
    records.write_summary(workdir, {'status': records.COMPLETE, 'final_test_accuracy': 0.9})
    runs = results.load_runs(str(tmp_path))
    assert runs.loc[0, 'norm.stats_scope'] == 'global'
    assert 'norm.batch_stats' not in runs.columns
    assert runs.loc[0, 'summary.final_test_accuracy'] == 0.9


def test_a_record_from_before_an_added_key_loads_with_the_value_that_reproduces_it():
    older = json.loads(default.get_config().to_json())
    for key in records.ADDED_KEYS:
        section, leaf = key.split('.')
        del older[section][leaf]
    assert records.config_differences(older, default.get_config()) == []
    clipped = default.get_config()
    clipped.optimizer.agc_clipping = 0.04  # a record without clipping differs from one with
    assert records.config_differences(older, clipped) == ['optimizer.agc_clipping']
    assert 'agc_clipping' not in older['optimizer']  # the caller's tree is left as read
