"""bn_study: controlled experiments on where normalization goes in a network."""
