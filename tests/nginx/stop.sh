#!/usr/bin/env bash
# Stops the nginx that tests/nginx/start.sh DIR started (by its PIDs): a
# graceful quit, then SIGKILL after 5 s.
dir=$1
pids=()
for f in "$dir/nginx.pid" "$dir/launcher.pid"; do
  [ -s "$f" ] && pids+=("$(cat "$f")")
done
[ ${#pids[@]} -eq 0 ] && exit 0
kill -QUIT "${pids[@]}" 2>/dev/null || true
for _ in $(seq 50); do
  kill -0 "${pids[@]}" 2>/dev/null || exit 0
  sleep 0.1
done
kill -KILL "${pids[@]}" 2>/dev/null || true
