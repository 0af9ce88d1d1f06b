#!/usr/bin/env bash
# `make run`: the smoke scenario against a local nginx started for the occasion.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/tide-run.XXXXXX)
trap 'tests/nginx/stop.sh "$dir"; rm -rf "$dir"' EXIT
url=$(tests/nginx/start.sh "$dir") || exit 1
./tide run smoke --target "$url" "$@"
