"""Layer 2, the dynamics: the papers' updates and losses as pure functions, the algorithm registry,
step-size converters and the theorems' schedules and constants. Imports only the core."""
