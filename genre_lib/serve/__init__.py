"""Serving: the store published nights are switched into, the "recommendations ready" events and
the read API. `python -m genre_lib.serve --config configs/default.yaml` starts the API."""
