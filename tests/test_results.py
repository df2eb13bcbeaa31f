"""Tables from run records: configurations are told apart by every varying key but seed."""

import numpy as np
import pandas as pd

from bn_study import records, results, sweep
from configs import default


def test_only_seeds_are_pooled():
    runs = pd.DataFrame({
        'run': list('abcdef'),
        'model.bn_position': ['none', 'none', 'after_act', 'after_act', 'none', 'none'],
        'optimizer.learning_rate': [0.1, 0.1, 0.1, 0.1, 0.5, 0.5],
        'seed': [0, 1, 0, 1, 0, 1],
        'batch_size': [128] * 6,
        'summary.status': ['complete'] * 5 + ['failed'],
        'summary.final_test_accuracy': [0.90, 0.92, 0.95, 0.97, 0.50, None],
    })
    assert results.configuration_keys(runs) == ['model.bn_position', 'optimizer.learning_rate']
    table = results.placement_table(runs)
    row = table.loc[('after_act', 0.1)]
    assert (row['mean'], row['seeds'], row['not_complete']) == (0.96, 2, 0)
    assert abs(row['std'] - 0.0141421) < 1e-6  # sample standard deviation (n - 1)
    assert table.loc[('none', 0.5)]['seeds'] == 1
    assert table.loc[('none', 0.5)]['not_complete'] == 1
    assert list(table.index)[0] == ('after_act', 0.1)  # best first


def test_a_sweep_counts_diverged_runs_apart_and_skips_them_on_rerun(tmp_path):
    def fake_train(config, workdir):
        record = records.RunRecord(workdir)
        record.start(config, resume_step=None)
        lr = config.optimizer.learning_rate
        record.finish({'status': records.DIVERGED, 'diverged_at_step': 3} if lr > 1 else
                      {'status': records.COMPLETE, 'final_test_accuracy': 0.9})
    runs = [{'optimizer.learning_rate': lr} for lr in (0.1, 10.0)]
    first = sweep.run_sweep(default.get_config(), runs, str(tmp_path), fake_train)
    assert first == {'ran': 1, 'skipped': 0, 'diverged': 1, 'failed': 0}
    again = sweep.run_sweep(default.get_config(), runs, str(tmp_path), fake_train)
    assert again == {'ran': 0, 'skipped': 2, 'diverged': 0, 'failed': 0}
    table = results.placement_table(results.load_runs(str(tmp_path)))
    assert table.loc[10.0, ['seeds', 'diverged', 'not_complete']].tolist() == [0, 1, 1]
    assert np.isnan(table.loc[10.0, 'mean']) and table.loc[0.1, 'mean'] == 0.9
