"""Evaluations: run a dataset through a variant, score each output with evaluators, record it all as feedback."""
