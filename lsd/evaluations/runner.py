"""An evaluation run: every datapoint through the engine with bounded concurrency, every evaluator on each output,
each verdict recorded as metric feedback and as a result row; human judgements reused where they apply."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from lsd.config.evaluations import EvaluationConfig, EvaluatorConfig, LlmJudgeConfig, metric_name
from lsd.config.model import Config
from lsd.errors import LsdError, NotFound
from lsd.evaluations.datasets import Datapoint, Dataset
from lsd.evaluations.evaluators import Case, Evaluator, Verdict
from lsd.evaluations.outputs import canonical, output_hash
from lsd.evaluations.summary import EvaluatorSummary, RunSummary, Tally, interval
from lsd.ids import timestamp_of, uuid7
from lsd.inference.recording import output_to_json
from lsd.inference.request import InferenceRequest
from lsd.inference.run import Engine, InferenceResult
from lsd.records import BooleanMetricFeedbackRecord, FloatMetricFeedbackRecord, Record
from lsd.store import evaluations as store
from lsd.store.database import Database

RUN_TAG = "lsd::evaluation_run_id"
EVALUATION_TAG = "lsd::evaluation_name"
DATAPOINT_TAG = "lsd::datapoint_id"
EVALUATOR_TAG = "lsd::evaluator"


class Recorder(Protocol):
    async def record(self, records: Sequence[Record]) -> None: ...


def evaluator_json(e: EvaluatorConfig) -> dict[str, Any]:
    """What the run row keeps of an evaluator (the human feedback endpoint checks values against it)."""
    out: dict[str, Any] = {"type": e.type, "output_type": e.output_type, "optimize": e.optimize, "cutoff": e.cutoff}
    if isinstance(e, LlmJudgeConfig):
        out.update(function_name=e.function_name, variant_name=e.variant_name, output_field=e.output_field)
    return out


def feedback_record(
    target: UUID, metric: str, output_type: str, value: bool | float, tags: Mapping[str, str], feedback_id: UUID
) -> Record:
    created = timestamp_of(feedback_id)
    if output_type == "boolean":
        return BooleanMetricFeedbackRecord(feedback_id, created, target, "inference", metric, bool(value), tags, None)
    return FloatMetricFeedbackRecord(feedback_id, created, target, "inference", metric, float(value), tags, None)


@dataclass
class EvaluationRunner:
    """Runs one evaluation of one variant over one dataset. Use a new runner per run."""

    config: Config
    evaluation: EvaluationConfig
    evaluators: Mapping[str, Evaluator]
    engine: Engine
    database: Database
    recorder: Recorder
    _tallies: dict[str, Tally] = field(default_factory=dict)
    _inference_failures: int = 0
    _cost: list[float] = field(default_factory=list)

    async def run(
        self,
        dataset: Dataset,
        variant_name: str,
        *,
        concurrency: int = 8,
        on_datapoint: Callable[[], None] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RunSummary:
        """Create the run row, evaluate every datapoint, store the summary on the run row and return it.

        Raises NotFound for an unknown variant before anything is written. If the run is interrupted its row
        is marked failed; the results so far stay."""
        function = self.config.functions[self.evaluation.function_name]
        if variant_name not in function.variants:
            raise NotFound(f"unknown variant {variant_name!r} of function {function.name!r}", field="variant")
        started = time.perf_counter()
        run_id = uuid7()
        self._tallies = {name: Tally() for name in self.evaluators}
        run_config = {
            "evaluators": {name: evaluator_json(e.config) for name, e in self.evaluators.items()},
            "dataset": dataset.source,
            "datapoints": len(dataset.datapoints),
            "skipped": len(dataset.problems),
            "config_hash": self.config.source_hash,
        }
        run = store.RunRow(
            id=run_id,
            created_at=timestamp_of(run_id),
            evaluation_name=self.evaluation.name,
            function_name=function.name,
            variant_name=variant_name,
            status="running",
            config=run_config,
            tags=dict(tags or {}),
        )
        await store.insert_run(self.database, run)
        status = "failed"
        summary: RunSummary | None = None
        try:
            pending = iter(dataset.datapoints)
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(max(1, min(concurrency, len(dataset.datapoints)))):
                        group.create_task(self._worker(pending, run_id, function.type, variant_name, on_datapoint))
            except ExceptionGroup as failed:
                # The first worker's failure stopped the run (the others were cancelled): report that one.
                raise failed.exceptions[0] from failed
            summary = self._summary(run_id, dataset, variant_name, time.perf_counter() - started)
            status = "completed"
        finally:
            await store.finish_run(
                self.database, run_id, status, datetime.now(UTC), summary.to_json() if summary else None
            )
        return summary

    async def _worker(
        self,
        pending: Iterator[Datapoint],
        run_id: UUID,
        function_type: str,
        variant_name: str,
        on_datapoint: Callable[[], None] | None,
    ) -> None:
        # One shared iterator: each worker takes the next datapoint when it is free (no locks: one event loop).
        for datapoint in pending:
            await self._datapoint(datapoint, run_id, function_type, variant_name)
            if on_datapoint is not None:
                on_datapoint()

    async def _datapoint(self, datapoint: Datapoint, run_id: UUID, function_type: str, variant_name: str) -> None:
        base_tags = {
            RUN_TAG: str(run_id),
            EVALUATION_TAG: self.evaluation.name,
            DATAPOINT_TAG: datapoint.id,
        }
        request = InferenceRequest(
            input=datapoint.input,
            function_name=self.evaluation.function_name,
            variant_name=variant_name,
            tags={**datapoint.tags, **base_tags},
        )
        try:
            result = await self.engine.infer(request)
        except LsdError as exc:
            self._inference_failures += 1
            failed = {name: Verdict(None, f"inference failed: {exc.message}") for name in self.evaluators}
            for name, verdict in failed.items():
                self._count(name, verdict)
            await self._store(run_id, datapoint, None, None, failed)
            return
        if result.cost is not None:
            self._cost.append(result.cost)
        output = _stored_output(result, function_type)
        case = Case(datapoint, function_type, result.inference_id, output, canonical(output, function_type))
        digest = output_hash(case.canonical)
        verdicts: dict[str, Verdict] = {}
        records: list[Record] = []
        for name, evaluator in self.evaluators.items():
            tags = {**base_tags, EVALUATOR_TAG: name, "lsd::evaluated_inference_id": str(result.inference_id)}
            verdict = await self._judge(evaluator, case, digest, tags)
            self._count(name, verdict)
            if verdict.value is not None:
                verdict = replace(verdict, feedback_id=uuid7())
                records.append(self._feedback(evaluator.config, result.inference_id, verdict, base_tags))
            verdicts[name] = verdict
        if records:
            await self.recorder.record(records)
        await self._store(run_id, datapoint, case, digest, verdicts)

    def _feedback(
        self, config: EvaluatorConfig, inference_id: UUID, verdict: Verdict, base_tags: Mapping[str, str]
    ) -> Record:
        assert verdict.value is not None and verdict.feedback_id is not None
        tags = {**base_tags, EVALUATOR_TAG: config.name}
        if verdict.evaluator_inference_id is not None:
            tags["lsd::evaluator_inference_id"] = str(verdict.evaluator_inference_id)
        if verdict.source == "human":
            tags["lsd::human_feedback"] = "true"
        metric = metric_name(self.evaluation.name, config.name)
        return feedback_record(inference_id, metric, config.output_type, verdict.value, tags, verdict.feedback_id)

    async def _judge(self, evaluator: Evaluator, case: Case, digest: str, tags: Mapping[str, str]) -> Verdict:
        """A person's earlier judgement of this datapoint and output wins; else ask the evaluator."""
        if evaluator.config.type == "llm_judge":
            metric = metric_name(self.evaluation.name, evaluator.config.name)
            human = await store.human_judgement(self.database, metric, case.datapoint.id, digest)
            if human is not None and isinstance(human.value, bool | int | float):
                return Verdict(human.value, source="human")
        verdict = await evaluator.evaluate(case, tags)
        if verdict.cost is not None:
            self._cost.append(verdict.cost)
        return verdict

    def _count(self, name: str, verdict: Verdict) -> None:
        tally = self._tallies[name]
        if verdict.value is None:
            tally.failures += 1
            return
        tally.values.append(float(verdict.value))
        if verdict.source == "human":
            tally.human += 1

    async def _store(
        self,
        run_id: UUID,
        datapoint: Datapoint,
        case: Case | None,
        digest: str | None,
        verdicts: Mapping[str, Verdict],
    ) -> None:
        rows = []
        for name, verdict in verdicts.items():
            row_id = uuid7()
            rows.append(
                store.ResultRow(
                    id=row_id,
                    created_at=timestamp_of(row_id),
                    evaluation_run_id=run_id,
                    datapoint_id=datapoint.id,
                    inference_id=case.inference_id if case else None,
                    evaluator_name=name,
                    metric_name=metric_name(self.evaluation.name, name),
                    value=verdict.value,
                    source=verdict.source,
                    error=verdict.error,
                    input=datapoint.input_json,
                    output=case.output if case else None,
                    output_hash=digest,
                    reference=datapoint.reference if datapoint.has_reference else None,
                    feedback_id=verdict.feedback_id,
                    evaluator_inference_id=verdict.evaluator_inference_id,
                )
            )
        await store.insert_results(self.database, rows)

    def _summary(self, run_id: UUID, dataset: Dataset, variant_name: str, wall_time_s: float) -> RunSummary:
        evaluators = []
        for name, evaluator in self.evaluators.items():
            c = evaluator.config
            tally = self._tallies[name]
            mean, low, high = interval(tally.values, c.output_type)
            evaluators.append(
                EvaluatorSummary(
                    name=name,
                    type=c.type,
                    output_type=c.output_type,
                    optimize=c.optimize,
                    cutoff=c.cutoff,
                    n=len(tally.values),
                    failures=tally.failures,
                    human=tally.human,
                    mean=mean,
                    ci_low=low,
                    ci_high=high,
                )
            )
        return RunSummary(
            run_id=str(run_id),
            evaluation_name=self.evaluation.name,
            function_name=self.evaluation.function_name,
            variant_name=variant_name,
            datapoints=len(dataset.datapoints),
            inference_failures=self._inference_failures,
            skipped=dataset.problems,
            evaluators=tuple(evaluators),
            cost=math.fsum(self._cost) if self._cost else None,
            wall_time_s=wall_time_s,
        )


def _stored_output(result: InferenceResult, function_type: str) -> Any:
    if function_type == "json" and result.output is None:
        return None
    return output_to_json(result.content, result.output)
