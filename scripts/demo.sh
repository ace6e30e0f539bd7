#!/usr/bin/env bash
# The main job on an embedded default: a private registry, `soci convert` of a sample image, our
# soci-snapshotter-grpc and a private containerd, then the container runs from lazily loaded layers.
# Installs what it needs (Debian packages when root, npm deps), starts only private instances on
# 127.0.0.1 and temp dirs, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root (FUSE mounts, containerd, runc); run: sudo ./scripts/demo.sh" >&2
  exit 1
fi
bash scripts/setup.sh
exec node --import tsx scripts/demo.ts "$@"
