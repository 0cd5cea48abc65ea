"""Tables, figures, statistics and the claims report over many runs."""
