"""A single-node Kubernetes cluster on this machine: `python -m hack.cluster up|down|status`.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, containerd
with runc, a CNI bridge, CoreDNS, a registry on loopback holding the images built here, Argo's
controller and the Punching Fist chart: what `make cluster-up` starts and `make cluster-down`
stops. See docs/operations.md, "The development cluster".
"""
