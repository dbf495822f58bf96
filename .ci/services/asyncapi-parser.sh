#!/usr/bin/env bash
# The AsyncAPI project's own parser (@asyncapi/parser, on the machine's Node.js 20+),
# installed into .ci/node/ (ignored by git) for the tests that validate `tidings asyncapi`
# documents. Idempotent: does nothing when the pinned version is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION="3.6.6"
PREFIX=".ci/node"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "asyncapi-parser: node and npm are needed (apt-get install nodejs npm)" >&2
  exit 1
fi
installed="$PREFIX/node_modules/@asyncapi/parser/package.json"
if [ -f "$installed" ] && grep -q "\"version\": \"$VERSION\"" "$installed"; then
  echo "asyncapi-parser: @asyncapi/parser $VERSION already installed in $PREFIX"
  exit 0
fi
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --no-save --loglevel=error \
  "@asyncapi/parser@$VERSION"
echo "asyncapi-parser: installed @asyncapi/parser $VERSION in $PREFIX"
