"""bn_study: where normalization goes in a network, settled by controlled experiment."""
