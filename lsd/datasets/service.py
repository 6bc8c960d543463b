"""The datasets service: creates, replaces, renames, deletes and reads datapoints, checking them against the config.

The domain makes ids (UUIDv7) and timestamps; the store writes them as given. An update never edits a row: it stales
it and inserts the successor under a new id (TensorZero's rule), so anything that named the old id still finds it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import jsonschema
import orjson

from lsd.config.model import Config, FunctionConfig, MetricConfig
from lsd.datasets.requests import (
    UNSET,
    DatapointUpdate,
    FromInferences,
    NewDatapoint,
    parse_create,
    parse_from_inferences,
    parse_ids,
    parse_list,
    parse_rename,
    parse_update,
)
from lsd.errors import InvalidRequest, NotFound
from lsd.ids import uuid7
from lsd.inference.listing import parse_list_request
from lsd.store import datasets as store
from lsd.store import queries
from lsd.store.database import Database
from lsd.store.datasets import DatapointQuery, DatapointRow, StaleDatapoint
from lsd.store.queries import ListQuery, OutputSource, StoredRow

_EMPTY_TOOLS: Mapping[str, Any] = {
    "allowed_tools": None,
    "additional_tools": None,
    "tool_choice": None,
    "parallel_tool_calls": None,
    "provider_tools": [],
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DatasetService:
    """Datapoints in PostgreSQL. Every request error is an InvalidRequest naming its field (400); an unknown
    datapoint or inference a NotFound (404); DatabaseUnavailable (503) when PostgreSQL cannot answer."""

    def __init__(self, config: Config, database: Database) -> None:
        self.config = config
        self.database = database

    # -- checks against the config ---------------------------------------------------------------------------

    def _function(self, name: str, kind: str, path: str) -> FunctionConfig:
        function = self.config.functions.get(name)
        if function is None:
            raise InvalidRequest.at(path, f"unknown function {name!r}")
        if function.type != kind:
            raise InvalidRequest.at(path, f"function {name!r} is a {function.type} function, not {kind}")
        return function

    def _check_tools(self, tool_params: Mapping[str, Any] | None, path: str) -> None:
        for i, name in enumerate((tool_params or {}).get("allowed_tools") or ()):
            if name not in self.config.tools:
                raise InvalidRequest.at(f"{path}.allowed_tools[{i}]", f"unknown tool {name!r}")

    @staticmethod
    def _json_output(output: Mapping[str, Any] | None, schema: Any) -> dict[str, Any] | None:
        """`{"raw"}` as stored: `parsed` is the value when raw is JSON valid against the schema, else null (a
        datapoint may hold an invalid output on purpose)."""
        if output is None:
            return None
        raw = output.get("raw")
        parsed: Any = None
        if isinstance(raw, str):
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            valid = parsed is not None and (
                not isinstance(schema, dict) or jsonschema.Draft202012Validator(schema).is_valid(parsed)
            )
            if not valid:
                parsed = None
        return {"raw": raw, "parsed": parsed}

    # -- create --------------------------------------------------------------------------------------------

    def _row(self, dataset_name: str, new: NewDatapoint, path: str, now: dt.datetime) -> DatapointRow:
        function = self._function(new.function_name, new.type, f"{path}.function_name")
        output, schema = new.output, None
        if new.type == "json":
            schema = new.output_schema if new.output_schema is not None else function.output_schema
            if new.output_schema is not None:
                try:
                    jsonschema.Draft202012Validator.check_schema(new.output_schema)
                except jsonschema.SchemaError as exc:
                    raise InvalidRequest.at(
                        f"{path}.output_schema", f"not a valid JSON Schema: {exc.message}"
                    ) from None
            output = self._json_output(new.output, schema)
        else:
            self._check_tools(new.tool_params, path)
        return DatapointRow(
            type=new.type,
            id=uuid7(),
            dataset_name=dataset_name,
            function_name=new.function_name,
            name=new.name,
            episode_id=new.episode_id,
            input=new.input,
            output=output,
            tool_params=new.tool_params,
            output_schema=dict(schema) if schema is not None else None,
            tags=new.tags,
            source_inference_id=None,
            is_custom=True,
            is_deleted=False,
            staled_at=None,
            created_at=now,
            updated_at=now,
        )

    async def create(self, dataset_name: str, body: Any) -> list[UUID]:
        """`POST /v1/datasets/{dataset}/datapoints`: the new ids, in the order given."""
        now = _now()
        rows = [self._row(dataset_name, new, f"datapoints[{i}]", now) for i, new in enumerate(parse_create(body))]
        await store.insert(self.database, rows)
        return [r.id for r in rows]

    # -- update --------------------------------------------------------------------------------------------

    async def _live(self, dataset_name: str, ids: Sequence[UUID], path: str) -> dict[UUID, DatapointRow]:
        found = {r.id: r for r in await store.get_rows(self.database, ids, dataset_name=dataset_name, primary=True)}
        for i, datapoint_id in enumerate(ids):
            row = found.get(datapoint_id)
            if row is None or row.staled_at is not None:
                state = "unknown" if row is None else "stale (updated or deleted)"
                raise NotFound(
                    f"{path}[{i}].id: datapoint {datapoint_id} is {state} in dataset {dataset_name!r}",
                    field=f"{path}[{i}].id",
                )
        return found

    def _successor(self, row: DatapointRow, update: DatapointUpdate, path: str, now: dt.datetime) -> DatapointRow:
        if update.type != row.type:
            raise InvalidRequest.at(f"{path}.type", f"datapoint {row.id} is a {row.type} datapoint")
        changes: dict[str, Any] = {}
        if update.input is not UNSET:
            changes["input"] = update.input
        if update.tags is not UNSET:
            changes["tags"] = update.tags
        if update.name is not UNSET:
            changes["name"] = update.name
        if row.type == "json":
            schema = row.output_schema
            if update.output_schema is not UNSET:
                schema = changes["output_schema"] = update.output_schema
            if update.output is not UNSET:
                changes["output"] = self._json_output(update.output, schema)
        else:
            if update.output is not UNSET:
                changes["output"] = update.output
            if update.tool_changes:
                tools = {**_EMPTY_TOOLS, **(row.tool_params or {}), **update.tool_changes}
                self._check_tools(tools, path)
                changes["tool_params"] = tools
        return row.successor(uuid7(), now, **changes)

    async def update(self, dataset_name: str, body: Any) -> list[UUID]:
        """`PATCH /v1/datasets/{dataset}/datapoints`: each datapoint replaced by an edited copy; the new ids."""
        updates = parse_update(body)
        live = await self._live(dataset_name, [u.id for u in updates], "datapoints")
        now = _now()
        pairs = [(live[u.id], self._successor(live[u.id], u, f"datapoints[{i}]", now)) for i, u in enumerate(updates)]
        try:
            await store.replace_rows(self.database, pairs, now)
        except StaleDatapoint as exc:
            raise NotFound(
                f"datapoint {exc.datapoint_id} was changed meanwhile; read it again", field="datapoints"
            ) from None
        return [new.id for _, new in pairs]

    async def rename(self, dataset_name: str, body: Any) -> list[UUID]:
        """`PATCH /v1/datasets/{dataset}/datapoints/metadata`: names set in place; the same ids."""
        names = parse_rename(body)
        await self._live(dataset_name, [i for i, _ in names], "datapoints")
        try:
            await store.rename(self.database, dataset_name, names, _now())
        except StaleDatapoint as exc:
            raise NotFound(
                f"datapoint {exc.datapoint_id} was changed meanwhile; read it again", field="datapoints"
            ) from None
        return [i for i, _ in names]

    # -- delete --------------------------------------------------------------------------------------------

    async def delete(self, dataset_name: str, body: Any) -> int:
        """`DELETE /v1/datasets/{dataset}/datapoints`: how many live datapoints were deleted (unknown ids count 0)."""
        ids = parse_ids(body)
        return await store.delete(self.database, dataset_name, ids, _now()) if ids else 0

    async def delete_dataset(self, dataset_name: str) -> int:
        """`DELETE /v1/datasets/{dataset}`: every live datapoint deleted; how many."""
        return await store.delete(self.database, dataset_name, None, _now())

    # -- read ----------------------------------------------------------------------------------------------

    async def list_page(self, dataset_name: str, body: Any) -> list[DatapointRow]:
        """`POST /v1/datasets/{dataset}/list_datapoints`: a page of live datapoints, newest first by default."""
        request = parse_list(body)
        query = DatapointQuery(
            dataset_name=dataset_name,
            function_name=request.function_name,
            condition=request.condition,
            descending=request.descending,
            limit=request.limit,
            offset=request.offset,
        )
        return await store.list_rows(self.database, query)

    async def get(self, dataset_name: str | None, body: Any) -> list[DatapointRow]:
        """`POST /v1/datasets/[{dataset}/]get_datapoints`: in the order of the ids (stale ones included, as
        TensorZero); unknown ids are left out."""
        ids = parse_ids(body)
        found = {r.id: r for r in await store.get_rows(self.database, ids, dataset_name=dataset_name)} if ids else {}
        return [found[i] for i in ids if i in found]

    async def all(self, dataset_name: str, function_name: str | None = None) -> list[DatapointRow]:
        """Every live datapoint of a dataset, oldest first (`lsd datasets export`, `lsd evaluate --dataset-name`)."""
        query = DatapointQuery(dataset_name=dataset_name, function_name=function_name, descending=False, limit=None)
        return await store.list_rows(self.database, query)

    # -- from inferences -----------------------------------------------------------------------------------

    async def from_inferences(self, dataset_name: str, body: Any, metrics: Mapping[str, MetricConfig]) -> list[UUID]:
        """`POST /v1/datasets/{dataset}/from_inferences`: one datapoint per inference, its output taken from the
        inference, its latest demonstration, or none (`output_source`); the new ids."""
        request = parse_from_inferences(body)
        found = await self._source_inferences(request, metrics)
        now = _now()
        rows = [self._from_inference(dataset_name, r, request, now) for r in found]
        await store.insert(self.database, rows)
        return [r.id for r in rows]

    async def _source_inferences(self, request: FromInferences, metrics: Mapping[str, MetricConfig]) -> list[StoredRow]:
        configured = {name: queries.Metric(name, m.type, m.level) for name, m in metrics.items()}
        source: OutputSource = "demonstration" if request.output_source == "demonstration" else "inference"
        if request.query is not None:
            query = dataclasses.replace(parse_list_request(request.query), output_source=source)
            return await queries.list_inferences(self.database, query, configured)
        ids = request.inference_ids or ()
        if not ids:
            raise InvalidRequest.at("inference_ids", "at least one inference id is required")
        rows = await queries.list_inferences(self.database, ListQuery(ids=ids, output_source=source, limit=len(ids)))
        by_id = {r.id: r for r in rows}
        for i, inference_id in enumerate(ids):
            if inference_id not in by_id:
                why = " with a demonstration" if source == "demonstration" else ""
                raise NotFound(f"inference_ids[{i}]: no inference {inference_id}{why}", field=f"inference_ids[{i}]")
        return [by_id[i] for i in ids]

    def _from_inference(
        self, dataset_name: str, row: StoredRow, request: FromInferences, now: dt.datetime
    ) -> DatapointRow:
        function = self.config.functions.get(row.function_name)
        output: Any = None
        if request.output_source != "none":
            output = row.output  # a demonstration comes in an output's shape (lsd.store.queries)
        schema = row.output_schema if row.output_schema is not None else (function.output_schema if function else None)
        return DatapointRow(
            type="chat" if row.kind == "chat" else "json",
            id=uuid7(),
            dataset_name=dataset_name,
            function_name=row.function_name,
            name=None,
            episode_id=row.episode_id,
            input=row.input,
            output=output,
            tool_params=self._tools_of(row, function) if row.kind == "chat" else None,
            output_schema=dict(schema) if row.kind == "json" and schema is not None else None,
            tags=dict(row.tags or {}),
            source_inference_id=row.id,
            is_custom=False,
            is_deleted=False,
            staled_at=None,
            created_at=now,
            updated_at=now,
        )

    def _tools_of(self, row: StoredRow, function: FunctionConfig | None) -> dict[str, Any] | None:
        """An inference's stored tools ({tools_available, tool_choice, parallel_tool_calls}) as a datapoint's:
        the function's configured tools by key in `allowed_tools`, the others in `additional_tools`."""
        stored = row.tool_params if isinstance(row.tool_params, dict) else None
        if not stored:
            return None
        keys_by_name = {
            self.config.tools[k].name: k for k in (function.tools if function else ()) if k in self.config.tools
        }
        allowed, additional = [], []
        for tool in stored.get("tools_available") or ():
            if tool.get("name") in keys_by_name:
                allowed.append(keys_by_name[tool["name"]])
            else:
                additional.append({"type": "function", **tool})
        return {
            "allowed_tools": allowed,
            "additional_tools": additional or None,
            "tool_choice": stored.get("tool_choice"),
            "parallel_tool_calls": stored.get("parallel_tool_calls"),
            "provider_tools": [],
        }
