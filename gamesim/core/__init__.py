"""Layer 1, the core: preference games and their specs, equilibria, metric kernels, run directories,
guards and errors. Imports nothing else of gamesim."""

VERSION = "0.1.0"
