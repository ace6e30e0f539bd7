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
