"""JSON Schemas for the custom resources in deploy/k8s, which kubernetes-validate has no schema for.

Hand-written subsets of the operators' CRD schemas, covering every field deploy/k8s uses, each level closed
(`additionalProperties: false`) so a typo fails: ServiceMonitor (Prometheus Operator, monitoring.coreos.com/v1) and
Cluster and Pooler (CloudNativePG 1.24, postgresql.cnpg.io/v1), from the operators' API references. A field these
subsets do not list is rejected: add it here, from the reference, when a manifest starts using it.
"""

from __future__ import annotations

from typing import Any


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


STRING = {"type": "string"}
INT = {"type": "integer", "minimum": 0}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
QUANTITY = {"anyOf": [{"type": "string", "pattern": r"^[0-9.]+(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"}, {"type": "integer"}]}
METADATA = _object({"name": STRING, "namespace": STRING, "labels": STRING_MAP, "annotations": STRING_MAP}, ("name",))
RESOURCES = _object(
    {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
    }
)
LABEL_SELECTOR = _object({"matchLabels": STRING_MAP})


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _object(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": METADATA, "spec": spec},
        ("apiVersion", "kind", "metadata", "spec"),
    )


SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    _object(
        {
            "selector": LABEL_SELECTOR,
            "namespaceSelector": _object(
                {"matchNames": {"type": "array", "items": STRING}, "any": {"type": "boolean"}}
            ),
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": _object(
                    {
                        "port": STRING,
                        "path": STRING,
                        "interval": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
                        "scrapeTimeout": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
                        "scheme": {"enum": ["http", "https"]},
                    }
                ),
            },
        },
        ("selector", "endpoints"),
    ),
)

CNPG_CLUSTER = _resource(
    "postgresql.cnpg.io/v1",
    "Cluster",
    _object(
        {
            "instances": {"type": "integer", "minimum": 1},
            "imageName": STRING,
            "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
            "postgresql": _object({"parameters": STRING_MAP}),
            "bootstrap": _object(
                {
                    "initdb": _object(
                        {"database": STRING, "owner": STRING, "secret": _object({"name": STRING}, ("name",))}
                    )
                }
            ),
            "storage": _object({"size": QUANTITY, "storageClass": STRING}, ("size",)),
            "walStorage": _object({"size": QUANTITY, "storageClass": STRING}, ("size",)),
            "resources": RESOURCES,
            "monitoring": _object({"enablePodMonitor": {"type": "boolean"}}),
        },
        ("instances", "storage"),
    ),
)

CNPG_POOLER = _resource(
    "postgresql.cnpg.io/v1",
    "Pooler",
    _object(
        {
            "cluster": _object({"name": STRING}, ("name",)),
            "instances": INT,
            "type": {"enum": ["rw", "ro"]},
            "pgbouncer": _object(
                {"poolMode": {"enum": ["session", "transaction"]}, "parameters": STRING_MAP}, ("poolMode",)
            ),
        },
        ("cluster", "pgbouncer"),
    ),
)

SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("postgresql.cnpg.io/v1", "Cluster"): CNPG_CLUSTER,
    ("postgresql.cnpg.io/v1", "Pooler"): CNPG_POOLER,
}
