#!/usr/bin/env bash
# Runs a command beside a fresh moto server on a free 127.0.0.1 port, and stops moto afterwards
# (also on Ctrl-C). The command finds moto through MOTO_ENDPOINT.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "moto is not installed: run 'make venv'" >&2; exit 2; }
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$root/.local"
log="$root/.local/moto-$port.log"
# The launcher serialises moto's requests: its backends are not thread-safe (tools/moto_server.py).
"$py" "$root/tools/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
stop_moto() { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; rm -f "$log"; }
trap stop_moto EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$moto_pid" 2>/dev/null || { cat "$log" >&2; echo "moto failed to start" >&2; exit 1; }
  sleep 0.1
done
export MOTO_ENDPOINT="http://127.0.0.1:$port"
echo "moto listening at $MOTO_ENDPOINT" >&2
status=0
"$@" || status=$?
# A Python traceback in moto's log is a fault of the emulator (an HTTP 500 the clients saw):
# the run fails with it, so a concurrency fault can never hide behind a retry that went well.
if grep -q '^Traceback' "$log"; then
  echo "moto logged a Python traceback during the run:" >&2
  grep -A 30 '^Traceback' "$log" | head -n 120 >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
