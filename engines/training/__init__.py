"""Datasets, the training loop, evaluation, retraining."""
