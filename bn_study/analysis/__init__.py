"""Analysis of run records: tables, statistics, published claims, reports and figures.

Imports neither JAX, Flax, orbax nor TensorFlow: reports run where numpy, pandas, scipy and
matplotlib are installed beside the small pure-Python absl, etils and ml_collections
(tests/test_imports.py runs scripts/report.py with the heavy packages made unimportable)."""
