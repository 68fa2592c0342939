"""The local control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok).

Used by `make demo`, `batchyard dev up` and the cluster tests. Nothing here is imported by the
operator itself.
"""

from batchyard.devcluster.build import Binaries, ensure_binaries
from batchyard.devcluster.cluster import DevCluster
from batchyard.devcluster.nodes import node_manifest

__all__ = ["Binaries", "DevCluster", "ensure_binaries", "node_manifest"]
