"""Performance: the benchmark, the timing of the real steps, and the PyTorch peer."""
