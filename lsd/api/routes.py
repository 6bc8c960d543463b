"""The route table, and nothing else."""

from __future__ import annotations

from starlette.routing import Route

from lsd.api import batch, evaluations, feedback, inference, inferences, metrics, openai, status

ROUTES = [
    Route("/health", status.health, methods=["GET"]),
    Route("/status", status.status, methods=["GET"]),
    Route("/metrics", metrics.metrics, methods=["GET"]),
    Route("/inference", inference.endpoint, methods=["POST"]),
    Route("/feedback", feedback.feedback, methods=["POST"]),
    Route("/batch_inference", batch.start_batch, methods=["POST"]),
    Route("/batch_inference/{batch_id}", batch.batch_status, methods=["GET"]),
    Route("/batch_inference/{batch_id}/inference/{inference_id}", batch.batch_inference_status, methods=["GET"]),
    Route("/v1/inferences/list_inferences", inferences.list_inferences, methods=["POST"]),
    Route("/v1/inferences/get_inferences", inferences.get_inferences, methods=["POST"]),
    Route("/v1/evaluations/human_feedback", evaluations.human_feedback, methods=["POST"]),
    Route("/v1/evaluations/runs", evaluations.list_runs, methods=["GET"]),
    Route("/v1/evaluations/runs/{run_id}", evaluations.get_run, methods=["GET"]),
    Route("/openai/v1/chat/completions", openai.chat_completions, methods=["POST"]),
    Route("/openai/v1/embeddings", openai.embeddings, methods=["POST"]),
    Route("/openai/v1/models", openai.models, methods=["GET"]),
]
