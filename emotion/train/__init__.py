"""Training: data sets and their pipeline, augmentation, votes, the callbacks and recovery around fit, calibration, time budgets, distribution, results on disk."""
