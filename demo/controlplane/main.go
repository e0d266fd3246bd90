// Command sandbox-control is the sandbox cluster's control plane in one
// binary: "etcd" runs etcd (the version Kubernetes pins) and "apiserver"
// runs kube-apiserver, both built from Go modules so the sandbox needs no
// downloaded release binaries.
package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sandbox-control etcd|apiserver [flags]")
		os.Exit(2)
	}
	role := os.Args[1]
	switch role {
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, os.Args[2:]...))
	case "apiserver":
		os.Args = append([]string{"kube-apiserver"}, os.Args[2:]...)
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	default:
		fmt.Fprintf(os.Stderr, "sandbox-control: unknown role %q (want etcd or apiserver)\n", role)
		os.Exit(2)
	}
}
