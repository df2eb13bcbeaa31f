"""Analysis of run records: tables, statistics, published claims, reports and figures.

Imports neither JAX, Flax, orbax nor TensorFlow: reports run where only numpy, pandas, scipy
and matplotlib are installed (tests/test_imports.py checks it)."""
