#!/usr/bin/env bash
# Debian's chromium for the dashboard's browser tests: Playwright drives this binary
# through executable_path (no browser download). Idempotent: does nothing if present.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "ok chromium ($(/usr/bin/chromium --version 2>/dev/null || echo installed))"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
echo "ok chromium installed"
