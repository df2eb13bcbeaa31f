"""Studies: sweeps declared as data (declare), expanded into runs and run (runner), indexed
(sweep_index), and launched locally, on TPU VMs or through a scheduler (launch), each worker
being `python -m bn_study.studies.worker`."""
