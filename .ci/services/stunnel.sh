#!/usr/bin/env bash
# Install Debian's stunnel4 for the TLS tests (tests/integration/tls): they start their
# own stunnel in front of RabbitMQ, Redis and a private Tansu, on ports of their own.
# Idempotent: does nothing when stunnel is already on the PATH.
set -euo pipefail

if command -v stunnel >/dev/null 2>&1 || command -v stunnel4 >/dev/null 2>&1; then
    echo "stunnel: $(command -v stunnel || command -v stunnel4)"
    exit 0
fi
echo "stunnel: installing stunnel4"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q stunnel4 >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q stunnel4 >/dev/null
}
command -v stunnel >/dev/null 2>&1 || command -v stunnel4 >/dev/null 2>&1
echo "stunnel: installed"
