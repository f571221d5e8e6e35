"""Parameter sweeps (scripts/sweep.py): the sweep file, one trial, its record as a DVC
experiment, the results table, and the Dask cluster the trials may run on."""
