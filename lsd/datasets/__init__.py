"""Datasets: curated datapoints of chat and json functions, stored in PostgreSQL (TensorZero's /v1/datasets API)."""
