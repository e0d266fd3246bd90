module go-k8s-debug/demo/faultsvc

go 1.22
