#!/usr/bin/env bash
# `make run`: the webserver scenario against the bundled demo service
# (Flask + Celery + Redis + PostgreSQL, started here on loopback and stopped
# afterwards). Exits with tide's exit code. DEMO_RACE=1 runs the racy service.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/tide-demo.XXXXXX)
trap 'tests/webserver/demo.sh stop "$dir" >/dev/null 2>&1; rm -rf "$dir"' EXIT
echo "starting the demo service (DEMO_RACE=${DEMO_RACE:-0}) ..." >&2
env=$(tests/webserver/demo.sh start "$dir") || exit 1
eval "$env"
set +e
./tide run webserver --target "$TARGET" --env ADMIN_USER="$ADMIN_USER" \
  --env ADMIN_PASSWORD="$ADMIN_PASSWORD" --env DATABASE_URL="$DATABASE_URL" "$@"
rc=$?
[ $rc -eq 0 ] || echo "tide exited with $rc (README: exit codes)" >&2
exit $rc
