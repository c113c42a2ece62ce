"""Processes the CLI starts and talks to: the gateway's supervisor, its run files, LiteLLM's
config, the HTTP client of a running gateway, and the checks `doctor` runs against it."""
