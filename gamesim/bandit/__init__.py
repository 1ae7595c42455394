"""Layer 3, sampled feedback: preference queries, the papers' data recipes and the fits that turn
them into a step. Imports the core and the dynamics."""
