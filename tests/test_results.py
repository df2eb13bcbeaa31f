"""Tables from run records: configurations are told apart by every varying key but seed."""

import pandas as pd

from bn_study.analysis import results


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
