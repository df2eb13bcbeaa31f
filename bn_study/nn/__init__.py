"""The networks: norm layers and their factory, the model families, and their closed sets.

Never imports from bn_study.training: training maps over the networks, not the reverse."""
