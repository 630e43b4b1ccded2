"""Label definitions: functions of a customer's behaviour strictly after t, declared over
future-window aggregates and shared by the simulator's oracle and the training-set builder
(docs/model.md)."""
from labels.definitions import (
                                AGGREGATES,
                                CALLS_DAYS,
                                CALLS_THRESHOLD,
                                CHURN,
                                CHURN_DAYS,
                                HEALTH,
                                HEALTH_DAYS,
                                IB_CALLS,
                                LABEL_DEFINITIONS,
                                LABEL_HORIZON_DAYS,
                                LABELS,
                                Label,
                                LabelAggregate,
                                churn_label,
                                health_score,
                                ib_calls_label,
                                label_values,
)

__all__ = ["AGGREGATES", "CALLS_DAYS", "CALLS_THRESHOLD", "CHURN", "CHURN_DAYS", "HEALTH", "HEALTH_DAYS", "IB_CALLS",
           "LABEL_DEFINITIONS", "LABEL_HORIZON_DAYS", "LABELS", "Label", "LabelAggregate", "churn_label",
           "health_score", "ib_calls_label", "label_values"]
