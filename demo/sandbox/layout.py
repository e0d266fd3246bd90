"""Where everything lives inside the sandbox's one state directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_STATE_DIR = "GO_K8S_DEBUG_SANDBOX"


def default_state_dir() -> Path:
    """$GO_K8S_DEBUG_SANDBOX, else $XDG_STATE_HOME/go-k8s-debug/sandbox (~/.local/state/...)."""
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg).expanduser() / "go-k8s-debug" / "sandbox"


@dataclass(frozen=True)
class Layout:
    """Paths inside the state directory."""

    root: Path

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def nodes(self) -> Path:
        return self.root / "nodes"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def api_ready(self) -> Path:
        """Written by `up` once the API server is ready; node launchers wait for it."""
        return self.root / "apiserver.ready"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def restricted_kubeconfig(self) -> Path:
        return self.root / "restricted.kubeconfig"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def ssh_key(self) -> Path:
        return self.ssh / "id_ed25519"

    def node_dir(self, name: str) -> Path:
        return self.nodes / name

    def read_state(self) -> dict[str, Any]:
        """The recorded cluster facts (ports, nodes), or {} before the first `up`."""
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)
