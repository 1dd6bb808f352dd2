"""The evaluation protocol: how a history is split into train and test (splits.py) and how a ranked
list is scored (metrics.py). Below the ranker, whose re-ranker trains and decides on a split, and below
evaluation/, which runs the protocol on every model."""
