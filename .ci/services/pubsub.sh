#!/usr/bin/env bash
# Start Google's Pub/Sub emulator on 127.0.0.1:8085 for the Pub/Sub transport tests.
#
# Idempotent: does nothing if the port already answers. The emulator comes with the
# Debian package google-cloud-cli-pubsub-emulator (Java 17). It keeps everything in
# memory: a restart forgets every topic, subscription and message. The package's own
# launcher execs java, so the pid written to $PUBSUB_PIDFILE is the emulator's (the
# gcloud wrapper would leave a java child behind it instead).
set -euo pipefail

HOST=127.0.0.1
PORT="${PUBSUB_PORT:-8085}"
LOG="${PUBSUB_LOG:-/tmp/pubsub-emulator.log}"
PIDFILE="${PUBSUB_PIDFILE:-/tmp/pubsub-emulator.pid}"
WAIT_SECONDS="${PUBSUB_WAIT_SECONDS:-30}"
LAUNCHER=/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator

port_open() { (echo > "/dev/tcp/$HOST/$PORT") >/dev/null 2>&1; }

if port_open; then
    echo "pubsub: something already listens on $HOST:$PORT"
    exit 0
fi

if [ ! -x "$LAUNCHER" ]; then
    echo "pubsub: $LAUNCHER missing; installing google-cloud-cli-pubsub-emulator"
    apt-get install -y -q google-cloud-cli-pubsub-emulator >/dev/null
fi

echo "pubsub: starting the emulator on $HOST:$PORT (log: $LOG)"
nohup "$LAUNCHER" --host="$HOST" --port="$PORT" >"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"

for _ in $(seq 1 "$((WAIT_SECONDS * 5))"); do
    if port_open; then
        echo "pubsub: ready on $HOST:$PORT (pid $(cat "$PIDFILE"))"
        exit 0
    fi
    sleep 0.2
done
echo "pubsub: port $HOST:$PORT did not open within ${WAIT_SECONDS}s; see $LOG" >&2
exit 1
