"""The error every step of the training-set build raises when its inputs cannot give a dataset."""
from __future__ import annotations


class DatasetBuildError(ValueError):
    """The inputs cannot give a training set (too short a history, no rows, ...); the message says why."""
