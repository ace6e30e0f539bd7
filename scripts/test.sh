#!/usr/bin/env bash
# Runs every test (unit, integration and e2e) after doing its own setup. CI calls exactly this.
#   scripts/test.sh              everything
#   scripts/test.sh <substring>  only the test files whose path contains it
#   scripts/test.sh --unit [s]   unit tests only: no root, no Debian packages or Go tools; every test
#                                that needs root or a host tool (the e2e ones) skips, saying so
set -euo pipefail
cd "$(dirname "$0")/.."
unit=
if [ "${1:-}" = --unit ]; then unit=1; shift; fi
if [ -n "$unit" ]; then
  [ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error
  npm run -s build
  export SOCI_TEST_UNIT=1
else
  bash scripts/setup.sh
fi
npm run -s typecheck
npm run -s lint
npm run -s check-cycles
# Go-module test tools (AWS's soci as the byte-compat oracle); tests that need them fail in CI if absent.
if [ -z "$unit" ] && command -v go >/dev/null; then bash scripts/install-test-tools.sh; fi
# Node 20 has no glob in --test: pass the files.
mapfile -t files < <(find test -name '*.test.ts' | sort | grep -- "${1:-}")
exec node --import tsx --test --test-timeout=900000 "${files[@]}"
