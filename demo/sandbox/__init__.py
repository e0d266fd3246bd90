"""The sandbox cluster: a real kube-apiserver and etcd, node runtimes and sshd on one machine.

Commands (as root)::

    go-k8s-debug sandbox up [--nodes N] [--demo] [--state-dir D]   # returns when ready
    go-k8s-debug sandbox status [--json]
    go-k8s-debug sandbox kubeconfig [--restricted]                 # prints the path
    go-k8s-debug sandbox down                                      # leaves nothing behind

The state directory ($GO_K8S_DEBUG_SANDBOX, else $XDG_STATE_HOME/go-k8s-debug/sandbox)::

    admin.kubeconfig        user sandbox-admin (group system:masters)
    restricted.kubeconfig   user godebug-operator, bound by deploy/rbac.yaml
    ssh_config, known_hosts ssh -F STATE/ssh_config node-1   (strict host-key checking)
    ssh/                    client key id_ed25519, per-node sshd config and host key
    pki/                    CA, API server serving cert, client certs, SA signing key
    etcd/                   etcd's data (removed by down)
    nodes/node-N/           the node runtime's state (demo/sandbox/node)
    pids/, logs/            one pid file and one log per daemon
    state.json              ports, nodes, API URL, phase timings of the last up

Only one sandbox runs per host (nodes share the bridge gkd0 and 10.88.N.1):
``up`` takes a claim in /run and refuses while another sandbox holds it; set
$GO_K8S_DEBUG_SANDBOX_WAIT (seconds) to wait for it instead.
"""
