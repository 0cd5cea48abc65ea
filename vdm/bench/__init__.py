"""Performance measurement: python -m vdm.bench and the GPU check."""
