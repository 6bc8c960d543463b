"""The route table, and nothing else."""

from __future__ import annotations

from starlette.routing import Route

from lsd.api import (
    anthropic,
    batch,
    datasets,
    evaluations,
    experiments,
    export,
    feedback,
    inference,
    inferences,
    metrics,
    openai,
    openapi,
    sessions,
    status,
)
from lsd.api import responses as openai_responses
from lsd.api import workflow_evaluations as workflows

ROUTES = [
    Route("/health", status.health, methods=["GET"]),
    Route("/status", status.status, methods=["GET"]),
    Route("/metrics", metrics.metrics, methods=["GET"]),
    Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
    Route("/inference", inference.endpoint, methods=["POST"]),
    Route("/feedback", feedback.feedback, methods=["POST"]),
    Route("/batch_inference", batch.start_batch, methods=["POST"]),
    Route("/batch_inference/{batch_id}", batch.batch_status, methods=["GET"]),
    Route("/batch_inference/{batch_id}/inference/{inference_id}", batch.batch_inference_status, methods=["GET"]),
    Route("/v1/inferences/list_inferences", inferences.list_inferences, methods=["POST"]),
    Route("/v1/inferences/get_inferences", inferences.get_inferences, methods=["POST"]),
    Route("/v1/inferences/export", export.export_inferences, methods=["POST"]),
    Route("/v1/sessions", sessions.list_sessions, methods=["GET"]),
    Route("/v1/sessions/{session_id}", sessions.get_session, methods=["GET"]),
    Route("/v1/evaluations/human_feedback", evaluations.human_feedback, methods=["POST"]),
    Route("/v1/evaluations/runs", evaluations.list_runs, methods=["GET"]),
    Route("/v1/evaluations/runs/{run_id}", evaluations.get_run, methods=["GET"]),
    Route("/workflow_evaluation_run", workflows.create_run, methods=["POST"]),
    Route("/workflow_evaluation_run/{run_id}/episode", workflows.create_episode, methods=["POST"]),
    Route("/dynamic_evaluation_run", workflows.create_run, methods=["POST"]),
    Route("/dynamic_evaluation_run/{run_id}/episode", workflows.create_episode, methods=["POST"]),
    Route("/v1/workflow_evaluations/runs/{run_id}", workflows.get_run, methods=["GET"]),
    Route("/v1/functions/{function_name}/experiment", experiments.show, methods=["GET"]),
    Route("/v1/datasets/get_datapoints", datasets.get_datapoints, methods=["POST"]),
    Route("/v1/datasets/{dataset_name}", datasets.delete_dataset, methods=["DELETE"]),
    Route("/v1/datasets/{dataset_name}/datapoints", datasets.create_datapoints, methods=["POST"]),
    Route("/v1/datasets/{dataset_name}/datapoints", datasets.update_datapoints, methods=["PATCH"]),
    Route("/v1/datasets/{dataset_name}/datapoints", datasets.delete_datapoints, methods=["DELETE"]),
    Route("/v1/datasets/{dataset_name}/datapoints/metadata", datasets.update_metadata, methods=["PATCH"]),
    Route("/v1/datasets/{dataset_name}/list_datapoints", datasets.list_datapoints, methods=["POST"]),
    Route("/v1/datasets/{dataset_name}/get_datapoints", datasets.get_datapoints, methods=["POST"]),
    Route("/v1/datasets/{dataset_name}/from_inferences", datasets.from_inferences, methods=["POST"]),
    Route("/openai/v1/chat/completions", openai.chat_completions, methods=["POST"]),
    Route("/openai/v1/embeddings", openai.embeddings, methods=["POST"]),
    Route("/openai/v1/responses", openai_responses.responses, methods=["POST"]),
    Route("/openai/v1/models", openai.models, methods=["GET"]),
    Route("/openai/v1/models/{model}", openai.model, methods=["GET"]),
    Route("/anthropic/v1/messages", anthropic.messages, methods=["POST"]),
    Route("/anthropic/v1/messages/count_tokens", anthropic.count_tokens, methods=["POST"]),
    Route("/anthropic/v1/models", anthropic.models, methods=["GET"]),
    Route("/anthropic/v1/models/{model}", anthropic.model, methods=["GET"]),
]
