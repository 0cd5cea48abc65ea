"""Foundation: configuration, datasets, checkpoints and provenance (atomic result files)."""
