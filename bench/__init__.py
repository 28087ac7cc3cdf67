"""Ferry's benchmarks (not tests): `just bench` runs them and prints tables with ratios."""
