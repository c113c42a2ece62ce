"""Every state-changing operation: each is one locked read-modify-write of the state store. The CLI, the
dashboard and the admin API call these, so a change means the same wherever it is made."""
from broke.changes.backends import (
    add_backend,
    backend_users,
    key_policy_providers,
    remove_backend,
    set_key_policy,
    set_model_policy,
)
from broke.changes.harness import set_harness_policy, set_lanes
from broke.changes.local import add_local_model, add_node, remove_node
from broke.changes.presets import ProfileChange, load_profile, load_team, save_team, write_profile
from broke.changes.sandbox import default_sandbox, set_default_sandbox
from broke.changes.slots import check_backend, check_slot, set_fallbacks, set_frozen, set_thresholds, set_tier, swap

__all__ = [
    "ProfileChange", "add_backend", "add_local_model", "add_node", "backend_users", "check_backend",
    "check_slot", "default_sandbox", "key_policy_providers", "load_profile", "load_team", "remove_backend",
    "remove_node", "save_team", "set_default_sandbox", "set_fallbacks", "set_frozen", "set_harness_policy",
    "set_key_policy", "set_lanes", "set_model_policy", "set_thresholds", "set_tier", "swap", "write_profile",
]
