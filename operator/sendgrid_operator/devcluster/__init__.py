"""A local Kubernetes control plane for tests and demos, with no container runtime.

Why it exists: the operator's behaviour that matters most (RBAC, CEL validation, status
subresources, Jobs, garbage collection) lives in the real API server and controller manager,
which neither unit tests nor mocks reproduce. This package starts real ``etcd``,
``kube-apiserver`` and ``kube-controller-manager`` binaries (built by
``hack/controlplane/build.sh``) on loopback, plus a small node agent that plays a kubelet for
Pods by running their commands as local processes.

Entry points: ``python -m sendgrid_operator.devcluster up --dir DIR`` and the
:class:`DevCluster` class used by the pytest fixtures.
"""

from sendgrid_operator.devcluster.api import Api, ApiError, KubeConfig
from sendgrid_operator.devcluster.binaries import Binaries, ensure_binaries
from sendgrid_operator.devcluster.cluster import DevCluster
from sendgrid_operator.devcluster.logs import pod_log

__all__ = [
    "Api",
    "ApiError",
    "Binaries",
    "DevCluster",
    "KubeConfig",
    "ensure_binaries",
    "pod_log",
]
