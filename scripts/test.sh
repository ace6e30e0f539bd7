#!/usr/bin/env bash
# Runs every test (unit, integration and e2e) after doing its own setup. CI calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run -s typecheck
# Go-module test tools (AWS's soci as the byte-compat oracle); tests that need them fail in CI if absent.
if command -v go >/dev/null; then bash scripts/install-test-tools.sh; fi
# Node 20 has no glob in --test: pass the files. Optional filter: scripts/test.sh <substring>.
mapfile -t files < <(find test -name '*.test.ts' | sort | grep -- "${1:-}")
exec node --import tsx --test --test-timeout=900000 "${files[@]}"
