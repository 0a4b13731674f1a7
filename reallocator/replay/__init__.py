"""Counterfactual replay of recorded flights: what the planner would have done under the recorded
policy and others, and whether it would have been better (`counterfactual.py`); where the
recordings come from (`source.py`); the report (`report.py`); the command (`cli.py`)."""
