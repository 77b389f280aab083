"""What runs around the training: the store and a run's life, sweeps and searches, resuming,
reaping dead runs, checkpoints, devices, guards, callbacks, and the wrapper every command runs in.

Importing the package loads nothing heavy: modules that need torch, Lightning or MLflow import
them themselves, so that `--help` and refused configs answer before those load.
"""
