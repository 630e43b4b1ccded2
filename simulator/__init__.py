"""Synthetic tutoring marketplace with a latent customer health, and its label oracle.

    from simulator.config import SimConfig
    from simulator.run import simulate                  # -> OUT/events, stream.jsonl, truth.parquet, ...
    from simulator.oracle import label_probabilities    # true P(label) for (customer_id, event_timestamp) rows

See docs/simulator.md.
"""
