"""Confinement for launched agents: profiles (normal, hardened, strict) turned into a bubblewrap command
line on Linux or a Seatbelt profile on macOS, the Unix-socket bridge that lets a strict sandbox reach
only the gateway, and the check of what this machine can enforce."""
