"""Layer 4, the engine: `simulate`/`simulate_batch` as compiled, chunked, resumable loops on the JAX
and numba backends, and run results on disk. Imports the layers below."""
