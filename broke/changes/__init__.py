"""Every state-changing operation: each is one locked read-modify-write of the state store. The CLI, the
dashboard and the admin API call these, so a change means the same wherever it is made.
Each subject is its own module; this package re-exports every operation (ruff: F401 ignored here)."""
from broke.changes.backends import (
    add_backend,
    backend_users,
    key_policy_providers,
    remove_backend,
    set_key_policy,
    set_model_policy,
)
from broke.changes.costs import BudgetChange, set_cost_reference, set_prices, set_profile_budget
from broke.changes.harness import set_harness_policy, set_lanes
from broke.changes.health import set_key_state, set_model_state
from broke.changes.judge import judge_off, set_judge
from broke.changes.local import add_local_model, add_node, remove_node
from broke.changes.presets import ProfileChange, load_profile, load_team, save_team, write_profile
from broke.changes.recording import EVERY_SLOT, check_record_slots, set_recording
from broke.changes.routes import set_route
from broke.changes.sandbox import default_sandbox, set_default_sandbox
from broke.changes.slots import check_backend, check_slot, set_fallbacks, set_frozen, set_thresholds, set_tier, swap
from broke.changes.team_edits import set_team_access, set_team_fallbacks
