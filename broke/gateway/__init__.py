"""The gateway: LiteLLM config rendering, the front proxy (ASGI) and the process supervisor."""
