"""The process the agent watches: one container's main process on this node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional


@dataclass
class Target:
    """A resolved target. Paths are host paths; pids are host (init-namespace) pids."""

    pid: int
    #: The pid as the container sees it (last column of NSpid).
    nspid: int
    #: /proc/<pid>/exe: opens the binary regardless of mount namespace.
    exe: str
    #: Path of the binary inside the container (readlink of /proc/<pid>/exe).
    exe_in_container: str
    #: "/proc/<pid>/ns/net": the pod's network namespace.
    netns: str
    #: cgroup directories (absolute host paths) by role: "container", "pod";
    #: for v1 the cpu controller's directories.
    cgroups: Dict[str, str] = field(default_factory=dict)
    cgroup_version: int = 1
    container_id: Optional[str] = None
    pod_uid: Optional[str] = None
    comm: str = ""
