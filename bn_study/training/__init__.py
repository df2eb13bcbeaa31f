"""Training one run (or a vmapped group of seeds): data, steps, evaluation, diagnostics,
optimizers, checkpoints, devices, and the loop that ties them to a run record."""
