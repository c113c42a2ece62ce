"""The `broke` command line: parses, calls the core, renders. No logic of its own."""
