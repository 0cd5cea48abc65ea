"""The command line the Snakemake rules call (python -m vdm ...)."""
