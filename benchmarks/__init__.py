"""Side-by-side benchmarks of gpt2_jax against the HF PyTorch reference (see BENCHMARKS.md)."""
