"""broke: local control plane for LLM routing."""
__version__ = "0.1.0"
