#!/usr/bin/env bash
# Entry point for the kind-tests cluster: a kind cluster where Docker works,
# otherwise a real single-node Kubernetes from local processes.
# Usage: cluster.sh up|down|status|env|load-image IMAGE_OR_TAR...|build
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/build.sh"

cmd="${1:-}"; shift || true
case "$cmd" in
  build) build_all ;;
  *) echo "usage: $0 up|down|status|env|load-image IMAGE...|build" >&2; exit 2 ;;
esac
