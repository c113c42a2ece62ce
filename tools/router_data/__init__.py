"""Builders of the router's shipped data (dev only, not in the wheel): `build` (the training set, with
`make_data` and `external`) and `make_vectors` (the static token vectors)."""
