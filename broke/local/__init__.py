"""Local MLX models and workers."""
