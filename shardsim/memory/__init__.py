"""Memory terms per rank: weights, KV cache, activations, runtime — pure functions with their sources."""
