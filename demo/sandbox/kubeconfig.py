"""Kubeconfig files for the sandbox's users, self-contained (certificates inlined)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

CLUSTER_NAME = "go-k8s-debug-sandbox"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write(path: Path, server: str, ca: Path, crt: Path, key: Path, user: str) -> None:
    """Write a kubeconfig for ``user`` authenticating with a client certificate.

    The data is inlined so the file still works when copied elsewhere (a
    bastion host, a CI artifact) and the console needs no other state file.
    """
    context = f"{user}@{CLUSTER_NAME}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(crt),
                    "client-key-data": _b64(key),
                },
            }
        ],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": CLUSTER_NAME, "user": user, "namespace": "default"},
            }
        ],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
