"""Pure routing decisions: the resolver, backend lookups, the transport of an attempt and key rotation.

Nothing here does I/O of its own: callers read state, health and the environment and pass them in.
"""
