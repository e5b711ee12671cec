"""Training runs: run config, trainer, run bookkeeping and evaluation on a dataset."""
