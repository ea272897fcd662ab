"""Gradual pruning of LSLo adapters: the schedule (eq. 4), the pools, and the controller the task
drives at epoch/update boundaries."""
