#!/usr/bin/env bash
# Deletes the kind demo's cluster (kind/demo.sh), with everything in it.
set -euo pipefail
cluster=mwm-demo
if ! command -v kind >/dev/null 2>&1; then
    echo "kind/down.sh: kind not found on PATH" >&2
    exit 1
fi
kind delete cluster --name "$cluster"
