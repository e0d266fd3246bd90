"""The sandbox's node runtime: a kubelet stand-in that runs pods as real processes.

Run one per node (engineer-facing; ``go-k8s-debug sandbox up`` does it for you)::

    python -m demo.sandbox.node run --kubeconfig PATH --node-name node-1 \\
        --node-ip 10.88.1.1 --state-dir DIR        # foreground until SIGTERM
    python -m demo.sandbox.node cleanup --state-dir DIR

What a node does: puts its address on the host bridge ``gkd0`` (10.88.0.1/16),
registers a Ready ``Node``, and runs every container of each pod bound to it
(``spec.nodeName``) as a real process in the pod's network namespace (pod IP
10.88.N.k on a veth to the bridge) and in its own PID, mount, UTS and IPC
namespaces, rooted (pivot_root, like runc) in a per-container rootfs that holds
the image's binary. cgroups follow kubelet's cgroupfs driver:
``kubepods/<burstable|besteffort>/pod<uid>/<container-id>`` (Guaranteed pods:
``kubepods/pod<uid>/<container-id>``), with CPU quota and memory limit from the
pod spec. Pod status goes through the API as a kubelet writes it.

Images (see ``images.py``): ``sandbox.local/<name>[:tag]`` is ``build/bin/<name>``;
``sandbox.local/busybox`` is ``/bin/busybox``; ``local/<absolute path>`` (for example
``local//home/me/bin/myservice``) runs your own static binary. Anything else ends
in ``ErrImagePull`` / ``ImagePullBackOff``.

A container's stdout and stderr go to ``STATE/pods/<uid>/containers/<id>/log``.
A restarted runtime (same ``--state-dir``) adopts containers that still run: each
has a shim process that outlives the runtime and records the exit status.
``cleanup`` (and ``teardown_host()`` after the last node) removes processes,
namespaces, veths, the bridge and the cgroups the sandbox created, nothing else.

Not implemented: init containers, probes, volumes, exec/logs/port-forward
(no kubelet HTTP endpoint), ephemeral containers, $(VAR) expansion in args.
"""

from __future__ import annotations

from .images import ImagePullError, resolve
from .runtime import ContainerConfig, ContainerInfo, PodRuntime, PodSandboxConfig, SandboxRuntime
from .teardown import cleanup_state_dir, teardown_host

__all__ = [
    "ContainerConfig",
    "ContainerInfo",
    "ImagePullError",
    "PodRuntime",
    "PodSandboxConfig",
    "SandboxRuntime",
    "cleanup_state_dir",
    "resolve",
    "teardown_host",
]
