"""Label definitions: functions of a customer's behaviour strictly after t, shared by the
simulator's oracle and the training-set builder (docs/model.md)."""
from labels.definitions import (
                                CALLS_DAYS,
                                CALLS_THRESHOLD,
                                CHURN_DAYS,
                                HEALTH_DAYS,
                                LABEL_HORIZON_DAYS,
                                LABELS,
                                churn_label,
                                health_score,
                                ib_calls_label,
)

__all__ = ["CALLS_DAYS", "CALLS_THRESHOLD", "CHURN_DAYS", "HEALTH_DAYS", "LABEL_HORIZON_DAYS", "LABELS",
           "churn_label", "health_score", "ib_calls_label"]
