#!/usr/bin/env bash
# Packages `kubectl eol` for krew: a tar.gz holding the binary and the licence,
# and the krew plugin manifest pointing at it with its sha256.
#
#   kubectl-eol/package.sh [--binary PATH] [OUT_DIR]
#
# Without --binary it builds the release binary. Install the package with
#   kubectl krew install --manifest=OUT_DIR/eol.yaml --archive=OUT_DIR/kubectl-eol-<version>-linux-<arch>.tar.gz
# (or publish the archive at the manifest's uri and add the manifest to an index).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eol/target}"

binary=''
if [ "${1:-}" = --binary ]; then binary=$2; shift 2; fi
out=${1:-$CARGO_TARGET_DIR/krew}
version=v$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "package.sh: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
if [ -z "$binary" ]; then
  cargo build --release -p kubectl-eol
  binary=$CARGO_TARGET_DIR/release/kubectl-eol
fi
[ -x "$binary" ] || { echo "package.sh: $binary is not an executable" >&2; exit 1; }

mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$binary" "$stage/kubectl-eol"
cp LICENSE "$stage/LICENSE"
cp kubectl-eol/kubectl_complete-eol "$stage/kubectl_complete-eol"
archive="kubectl-eol-$version-linux-$arch.tar.gz"
tar -C "$stage" -czf "$out/$archive" kubectl-eol kubectl_complete-eol LICENSE
sha=$(sha256sum "$out/$archive" | cut -d' ' -f1)

cat >"$out/eol.yaml" <<MANIFEST
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: eol
spec:
  version: $version
  homepage: https://example.invalid/eol
  shortDescription: Show, switch and run EOL Features
  description: |
    kubectl eol works with the EOL operator's Features and FeatureRuns:
    a live tree of a Feature (configurations, ReplicaSets, pods, phase per
    operation, switch progress, shadow agreement, usage and its last runs),
    phase switches of a feature or one operation, runs with their output,
    their logs, and a shadow switch's comparison. It acts as your kubeconfig's
    user, with your RBAC.
  platforms:
  - selector:
      matchLabels:
        os: linux
        arch: $arch
    uri: https://example.invalid/eol/releases/download/$version/$archive
    sha256: $sha
    bin: kubectl-eol
    files:
    - from: kubectl-eol
      to: .
    - from: kubectl_complete-eol
      to: .
    - from: LICENSE
      to: .
MANIFEST
echo "$out/eol.yaml"
echo "$out/$archive"
