"""Studies: sweeps declared as data, expanded into runs, indexed, and launched locally, on
TPU VMs or through a scheduler."""
