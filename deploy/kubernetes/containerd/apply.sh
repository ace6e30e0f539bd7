#!/usr/bin/env bash
# Installs soci.toml as a containerd 2.x drop-in and makes containerd's config import it.
# Run as root on the node, then restart containerd. CONTAINERD_CONFIG and CONTAINERD_CONF_D
# override the paths.
set -euo pipefail
config=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
confd=${CONTAINERD_CONF_D:-/etc/containerd/conf.d}
pattern="$confd/*.toml"

install -D -m 0644 "$(dirname "$0")/soci.toml" "$confd/soci.toml"

# With no config file containerd reads no imports: write one that only imports conf.d (containerd
# fills in its defaults around it, as it does with no file).
if [ ! -e "$config" ]; then
  mkdir -p "$(dirname "$config")"
  printf 'version = 3\nimports = ["%s"]\n' "$pattern" >"$config"
fi

version=$(sed -n 's/^version *= *\([0-9][0-9]*\).*/\1/p' "$config" | head -n 1)
if [ "${version:-1}" -lt 3 ]; then
  echo "apply.sh: $config is a version ${version:-1} config; containerd 2.x would drop its CRI settings" \
    "once soci.toml (version 3) is imported. Migrate it first:" \
    "containerd config migrate > config.new && mv config.new $config" >&2
  exit 1
fi

if ! grep -qF "\"$pattern\"" "$config" && ! grep -qF "'$pattern'" "$config"; then
  if grep -qE '^imports *=' "$config"; then
    echo "apply.sh: add \"$pattern\" to the imports list of $config" >&2
    exit 1
  fi
  # A top-level key must come before the first table: the line goes first.
  { echo "imports = [\"$pattern\"]"; cat "$config"; } >"$config.new"
  mv "$config.new" "$config"
fi

echo "apply.sh: installed $confd/soci.toml, imported by $config."
echo "Start the snapshotter if it is not running, then restart containerd: systemctl restart containerd"
