"""gpt2_jax: GPT-2 in JAX/Flax. The public API is re-exported here."""
