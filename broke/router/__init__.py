"""The prompt-complexity router behind the `auto` slot (estimate, tiers, evaluation, learning).

Modules: `features` (prompt features), `data` (shipped training set), `estimator` (Estimate,
Router: the fitted prior), `model` (train, load_or_train), `artifact` (the cached and the shipped
fitted prior), `tiers` (thresholds, tiers, calibration, temperature), `evaluate` (RouteLLM's APGR /
CPT), `labels` (the user's labels in records.sqlite), `outcomes` (outcome records of routed requests,
feedback), `local` (the model fitted on the labels), `learned` (the prior moved by it: what `auto`
uses), `decide` (what the CLI asks). The shipped data's builders are dev-only, in `tools/router_data/`.
"""
