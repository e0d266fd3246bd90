"""Pure tests of tui.cluster: pod rows as kubectl shows them, from real V1Pod objects."""

from __future__ import annotations

import datetime as dt

import pytest
from kubernetes.client import (
    V1Container,
    V1ContainerPort,
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Node,
    V1NodeAddress,
    V1NodeStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
    V1ResourceRequirements,
)

from tui.cluster import (
    ClusterError,
    cpu_limit,
    describe_api_error,
    format_age,
    load_api_client,
    node_address,
    parse_container_id,
    pod_info,
    pod_status,
    select_container,
)

CID = "containerd://" + "ab" * 32
T0 = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.UTC)


def running(ready=True, restarts=0, name="app", cid=CID):
    return V1ContainerStatus(
        name=name, image="img", image_id="", container_id=cid, ready=ready,
        restart_count=restarts, state=V1ContainerState(running=V1ContainerStateRunning()),
    )  # fmt: skip


def waiting(reason, name="app", restarts=0):
    return V1ContainerStatus(
        name=name, image="img", image_id="", ready=False, restart_count=restarts,
        state=V1ContainerState(waiting=V1ContainerStateWaiting(reason=reason)),
    )  # fmt: skip


def terminated(reason=None, exit_code=0, signal=None, name="app"):
    return V1ContainerStatus(
        name=name, image="img", image_id="", ready=False, restart_count=0,
        state=V1ContainerState(
            terminated=V1ContainerStateTerminated(reason=reason, exit_code=exit_code, signal=signal)
        ),
    )  # fmt: skip


def make_pod(
    name="api",
    ns="demo",
    statuses=None,
    containers=None,
    phase="Running",
    deleting=False,
    labels=None,
    conditions=None,
):
    containers = containers or [
        V1Container(
            name="app",
            image="img",
            ports=[V1ContainerPort(container_port=6060, name="pprof")],
            resources=V1ResourceRequirements(limits={"cpu": "200m"}),
        )
    ]
    return V1Pod(
        metadata=V1ObjectMeta(
            name=name,
            namespace=ns,
            uid="uid-1",
            creation_timestamp=T0,
            labels=labels or {"app": name},
            resource_version="42",
            deletion_timestamp=T0 if deleting else None,
        ),
        spec=V1PodSpec(containers=containers, node_name="node-1"),
        status=V1PodStatus(
            phase=phase,
            pod_ip="10.88.0.5",
            host_ip="10.88.0.1",
            container_statuses=statuses if statuses is not None else [running()],
            conditions=conditions,
        ),
    )


def test_running_pod_row():
    p = pod_info(make_pod(statuses=[running(restarts=3)]))
    assert p.status == "Running"
    assert p.ready == "1/1"
    assert p.restarts == 3
    assert p.node == "node-1"
    assert p.cpu_limit == "200m"
    assert p.pprof_port == 6060
    assert p.created == T0.timestamp()
    assert p.pod_ip == "10.88.0.5"
    assert p.resource_version == "42"
    assert p.containers[0].container_id == CID
    assert p.containers[0].state == "running"
    assert p.key == "demo/api"


@pytest.mark.parametrize(
    "statuses,phase,expect",
    [
        ([waiting("CrashLoopBackOff", restarts=5)], "Running", "CrashLoopBackOff"),
        ([waiting("ErrImagePull")], "Pending", "ErrImagePull"),
        ([waiting("ImagePullBackOff")], "Pending", "ImagePullBackOff"),
        ([terminated("Completed")], "Succeeded", "Completed"),
        ([terminated("OOMKilled", 137)], "Running", "OOMKilled"),
        ([terminated(None, 2)], "Failed", "ExitCode:2"),
        ([terminated(None, 0, signal=9)], "Failed", "Signal:9"),
        ([], "Pending", "Pending"),
    ],
)
def test_status_column_like_kubectl(statuses, phase, expect):
    assert pod_status(make_pod(statuses=statuses, phase=phase)) == expect


def test_terminating_wins():
    assert pod_status(make_pod(deleting=True)) == "Terminating"


def test_completed_sidecar_with_running_container():
    two = [V1Container(name="app", image="i"), V1Container(name="side", image="i")]
    ready = [V1PodCondition(type="Ready", status="True")]
    pod = make_pod(
        containers=two,
        statuses=[running(name="app"), terminated("Completed", name="side")],
        conditions=ready,
    )
    assert pod_status(pod) == "Running"
    assert pod_info(pod).ready == "1/2"
    pod = make_pod(
        containers=two, statuses=[running(name="app"), terminated("Completed", name="side")]
    )
    assert pod_status(pod) == "NotReady"


def test_cpu_limit_sums_containers_and_formats_like_kubectl():
    def c(name, cpu):
        lim = {"cpu": cpu} if cpu else {}
        return V1Container(name=name, image="i", resources=V1ResourceRequirements(limits=lim))

    assert cpu_limit(make_pod(containers=[c("a", "500m"), c("b", "1")])) == "1500m"
    assert cpu_limit(make_pod(containers=[c("a", "0.5"), c("b", "500m")])) == "1"
    assert cpu_limit(make_pod(containers=[c("a", None)])) is None
    assert cpu_limit(make_pod(containers=[c("a", "250m"), c("b", None)])) == "250m"


def test_pprof_port_by_name_or_6060():
    named = V1Container(
        name="app", image="i", ports=[V1ContainerPort(container_port=7777, name="pprof")]
    )  # noqa: E501
    plain = V1Container(name="app", image="i", ports=[V1ContainerPort(container_port=6060)])
    none = V1Container(
        name="app", image="i", ports=[V1ContainerPort(container_port=8080, name="http")]
    )  # noqa: E501
    assert pod_info(make_pod(containers=[named])).pprof_port == 7777
    assert pod_info(make_pod(containers=[plain])).pprof_port == 6060
    assert pod_info(make_pod(containers=[none])).pprof_port is None


def test_hostile_names_pass_through_unchanged():
    hostile = "[bold red]x[/bold red]\x1b[31mevil"
    p = pod_info(make_pod(name=hostile, labels={"note": hostile}))
    # The row keeps the text exactly; rendering it literally is the widgets' job.
    assert p.name == hostile
    assert p.labels["note"] == hostile


def test_pod_info_from_plain_dict():
    raw = {
        "metadata": {
            "name": "a",
            "namespace": "n",
            "uid": "u",
            "creationTimestamp": "2026-11-25T20:00:00Z",
        },  # noqa: E501
        "spec": {
            "nodeName": "node-2",
            "containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "2"}}}],
        },  # fmt: skip
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "c",
                    "ready": True,
                    "restartCount": 1,
                    "containerID": CID,
                    "state": {"running": {}},
                }
            ],
        },  # fmt: skip
    }
    p = pod_info(raw)
    assert (p.status, p.ready, p.restarts, p.node, p.cpu_limit) == (
        "Running",
        "1/1",
        1,
        "node-2",
        "2",
    )  # noqa: E501
    assert p.created == T0.timestamp()


def test_node_address_prefers_internal_ip():
    node = V1Node(status=V1NodeStatus(addresses=[
        V1NodeAddress(type="Hostname", address="node-1"),
        V1NodeAddress(type="InternalIP", address="10.88.0.1"),
    ]))  # fmt: skip
    assert node_address(node) == "10.88.0.1"
    assert node_address(V1Node(status=V1NodeStatus(addresses=[]))) is None


def test_select_container():
    two = [V1Container(name="app", image="i"), V1Container(name="side", image="i")]
    p = pod_info(make_pod(containers=two, statuses=[running(name="app"), running(name="side")]))
    assert select_container(p).name == "app"
    assert select_container(p, "side").name == "side"
    with pytest.raises(ClusterError, match="no container named 'nope'.*app, side"):
        select_container(p, "nope")


def test_parse_container_id():
    assert parse_container_id(CID) == ("containerd", "ab" * 32)
    assert parse_container_id("docker://" + "AB" * 32) == ("docker", "ab" * 32)
    assert parse_container_id("ab" * 32) == ("", "ab" * 32)
    assert parse_container_id(None) is None
    assert parse_container_id("") is None
    # Never let text that could be a shell word through.
    assert parse_container_id("containerd://abc; rm -rf /") is None
    assert parse_container_id("containerd://$(reboot)") is None


def test_format_age():
    assert [format_age(s) for s in (5, 119, 130, 900, 4 * 3600, 50 * 3600, 30 * 86400)] == [
        "5s", "119s", "2m10s", "15m", "4h", "2d2h", "30d",
    ]  # fmt: skip


def test_kubeconfig_errors_are_sentences(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterError, match="does not exist; check --kubeconfig"):
        load_api_client(str(tmp_path / "missing"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ClusterError, match="No kubeconfig found"):
        load_api_client(None)
    cfg = tmp_path / "kc"
    cfg.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"  # noqa: E501
        "users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: one\n  context: {cluster: c, user: u, namespace: demo}\n"  # noqa: E501
        "current-context: one\n"
    )
    with pytest.raises(ClusterError, match="no context named 'two'; it has: one"):
        load_api_client(str(cfg), "two")
    t = load_api_client(str(cfg))
    assert (t.context, t.namespace, t.contexts) == ("one", "demo", ["one"])


def test_describe_api_error_unreachable_and_forbidden():
    from kubernetes.client.rest import ApiException

    e = ApiException(status=403, reason="Forbidden")
    e.body = '{"message": "pods is forbidden: User \\"x\\" cannot list"}'
    msg = describe_api_error(e, "list pods")
    assert "forbidden (403)" in msg and "deploy/rbac.yaml" in msg and "cannot list" in msg
    msg = describe_api_error(ConnectionRefusedError(111, "Connection refused"), "list pods")
    assert "unreachable" in msg and "kubeconfig's server address" in msg
