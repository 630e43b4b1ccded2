"""The customer-success console: alerts, a customer page and an overview, served over HTTP (`mhp console`).

Read-only except acknowledgements (docs/console.md). One module per job: ``acks`` (the acknowledgement
table), ``alert_feed`` (the alerts the serving path emitted), ``served_history`` (the served-feature log:
per-customer history and the population), ``event_log`` (recent events), ``reports`` (drift and
data-quality verdicts), ``charts`` (inline SVG), ``context`` (the loaded scoring path), ``app`` (routes).
"""
