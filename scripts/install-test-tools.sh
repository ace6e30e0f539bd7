#!/usr/bin/env bash
# Installs Go-module test tools into $SOCI_TEST_TOOLS (default /opt/soci-test-tools/bin):
#  - aws-soci: AWS's own `soci` CLI (github.com/awslabs/soci-snapshotter, a Go module), used only by
#    tests as the byte-compatibility oracle, and aws-soci-snapshotter-grpc, AWS's snapshotter (tests
#    that show it reads our artifacts). Their cmd module has `replace` directives, so `go install`
#    refuses it; we fetch both modules through the Go module proxy and build in a scratch workspace.
# Idempotent; needs `go` and `jq`. Nothing is copied into this repository.
set -euo pipefail
dest=${SOCI_TEST_TOOLS:-/opt/soci-test-tools/bin}
mkdir -p "$dest"
AWS_SOCI_VERSION=v0.16.1
AWS_SOCI_CMD_VERSION=v0.0.0-20260930233240-61147fe7c929

if [ ! -x "$dest/aws-soci" ] || [ ! -x "$dest/aws-soci-snapshotter-grpc" ]; then
  command -v go >/dev/null || { echo "install-test-tools: go not found" >&2; exit 1; }
  ws=$(mktemp -d)
  trap 'chmod -R u+w "$ws" 2>/dev/null; rm -rf "$ws"' EXIT
  export GOFLAGS=-mod=mod
  root=$(cd "$ws" && go mod download -json "github.com/awslabs/soci-snapshotter@$AWS_SOCI_VERSION" | jq -r .Dir)
  cmd=$(cd "$ws" && go mod download -json "github.com/awslabs/soci-snapshotter/cmd@$AWS_SOCI_CMD_VERSION" | jq -r .Dir)
  cp -r "$root" "$ws/soci" && chmod -R u+w "$ws/soci" && rm -rf "$ws/soci/cmd"
  cp -r "$cmd" "$ws/soci/cmd" && chmod -R u+w "$ws/soci/cmd"
  (cd "$ws/soci/cmd" && go build -o "$dest/aws-soci.tmp" ./soci) && mv "$dest/aws-soci.tmp" "$dest/aws-soci"
  (cd "$ws/soci/cmd" && go build -o "$dest/aws-soci-snapshotter-grpc.tmp" ./soci-snapshotter-grpc)
  mv "$dest/aws-soci-snapshotter-grpc.tmp" "$dest/aws-soci-snapshotter-grpc"
  echo "install-test-tools: built aws-soci and aws-soci-snapshotter-grpc $AWS_SOCI_VERSION"
fi

# containerd 2.2 (ctr and the runc shim too), from the Go module proxy: the e2e suites run on it as
# well as on Debian's containerd 1.6. Installed in a directory of its own, so a test puts it first in
# PATH (containerd finds its shim through PATH) without shadowing Debian's binaries.
CONTAINERD2_VERSION=v2.2.9
ctd2=${SOCI_TEST_TOOLS_CONTAINERD2:-$(dirname "$dest")/containerd-2.2/bin}
if [ ! -x "$ctd2/containerd" ] || [ ! -x "$ctd2/ctr" ] || [ ! -x "$ctd2/containerd-shim-runc-v2" ]; then
  command -v go >/dev/null || { echo "install-test-tools: go not found" >&2; exit 1; }
  mkdir -p "$ctd2"
  tmpbin=$(mktemp -d)
  for c in containerd ctr containerd-shim-runc-v2; do
    GOBIN="$tmpbin" GOFLAGS=-mod=mod CGO_ENABLED=1 go install "github.com/containerd/containerd/v2/cmd/$c@$CONTAINERD2_VERSION"
  done
  mv "$tmpbin"/* "$ctd2"/ && rmdir "$tmpbin"
  echo "install-test-tools: built containerd $CONTAINERD2_VERSION into $ctd2"
fi

# Kubernetes for the single-node e2e suite: kubelet and kube-apiserver from the Go module
# k8s.io/kubernetes, crictl from cri-tools, helm (v4) to lint and render deploy/kubernetes.
# k8s.io/kubernetes points its staged modules (k8s.io/api, client-go, ...) at ./staging, which its
# module zip does not hold: the build drops those replace lines and requires each at the matching
# v0.x release instead, in a scratch copy, outside any go.work.
K8S_VERSION=v1.37.2
K8S_STAGING_VERSION=v0.37.2
CRICTL_VERSION=v1.37.0
HELM_VERSION=v4.3.2
kube=${SOCI_TEST_TOOLS_KUBERNETES:-$(dirname "$dest")/kubernetes/bin}
if [ ! -x "$kube/kubelet" ] || [ ! -x "$kube/kube-apiserver" ]; then
  command -v go >/dev/null || { echo "install-test-tools: go not found" >&2; exit 1; }
  mkdir -p "$kube"
  kws=$(mktemp -d)
  src=$(cd "$kws" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .Dir)
  cp -r "$src" "$kws/k" && chmod -R u+w "$kws/k"
  staged=$(grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$kws/k/go.mod" | awk '{print $1}')
  sed -i '/=> \.\/staging\//d' "$kws/k/go.mod"
  for m in $staged; do (cd "$kws/k" && go mod edit "-require=$m@$K8S_STAGING_VERSION"); done
  for c in kubelet kube-apiserver; do
    (cd "$kws/k" && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$kube/$c.tmp" "./cmd/$c")
    mv "$kube/$c.tmp" "$kube/$c"
  done
  chmod -R u+w "$kws"; rm -rf "$kws"
  echo "install-test-tools: built kubelet and kube-apiserver $K8S_VERSION into $kube"
fi
if [ ! -x "$kube/crictl" ]; then
  GOBIN="$kube" GOFLAGS=-mod=mod go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  echo "install-test-tools: built crictl $CRICTL_VERSION"
fi
if [ ! -x "$kube/helm" ]; then
  GOBIN="$kube" GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  echo "install-test-tools: built helm $HELM_VERSION"
fi
