"""Batches: several photos with one set of options, each file judged on its own, admitted at once.

Builds on ``api.jobs`` (the same request type, admission path and sender); never imports events or ops.
"""
