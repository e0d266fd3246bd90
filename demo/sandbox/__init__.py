"""The sandbox cluster: a real kube-apiserver and etcd, node runtimes and sshd on one machine."""
