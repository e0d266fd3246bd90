"""Apply YAML manifests with the kubernetes client, binding pods to nodes.

The sandbox runs no scheduler: a pod whose manifest leaves ``spec.nodeName``
empty is bound at create time, round-robin over the nodes, as a scheduler's
binding would. Only kinds the client's ``create_from_dict`` knows are applied.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

# Objects other manifests live in go first.
_ORDER = {"Namespace": 0, "ClusterRole": 1, "Role": 1, "ServiceAccount": 1, "ConfigMap": 1}


def load(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``paths``, namespaces and roles first."""
    docs: list[dict[str, Any]] = []
    for p in sorted(paths):
        for doc in yaml.safe_load_all(p.read_text()):
            if isinstance(doc, dict) and doc.get("kind"):
                if doc["kind"].endswith("List"):
                    docs.extend(i for i in doc.get("items") or [] if isinstance(i, dict))
                else:
                    docs.append(doc)
    return sorted(docs, key=lambda d: _ORDER.get(d["kind"], 2))


def bind_pods(docs: list[dict[str, Any]], node_names: list[str]) -> list[dict[str, Any]]:
    """Set spec.nodeName round-robin on pods that have none (a pure function)."""
    rr: Iterator[str] = itertools.cycle(node_names)
    out = []
    for doc in docs:
        if doc.get("kind") == "Pod" and not (doc.get("spec") or {}).get("nodeName"):
            doc = {**doc, "spec": {**doc["spec"], "nodeName": next(rr)}}
        out.append(doc)
    return out


def apply(api: Any, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create each object with a kubernetes ApiClient; one that already exists is left as is.

    Returns:
        The documents that were created.
    """
    from kubernetes import utils  # slow to import: only when applying

    created = []
    for doc in docs:
        try:
            utils.create_from_dict(api, doc)
            created.append(doc)
        except utils.FailToCreateError as e:
            if all(getattr(x, "status", None) == 409 for x in e.api_exceptions):
                continue
            raise
    return created
