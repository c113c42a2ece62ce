"""The prompt-complexity router behind the `auto` slot (estimate, tiers, evaluation).

Modules: `features` (prompt features), `data` (shipped training set), `estimator` (Estimate,
Router: the fitted model), `model` (train, load_or_train), `artifact` (the cached fitted model),
`tiers` (thresholds, tiers, calibration, temperature), `evaluate` (RouteLLM's APGR / CPT). The
shipped data's builders are dev-only, in `tools/router_data/`.
"""
