#!/bin/sh
# Install Debian packages unless every given binary is already there (deploy.mk's tools).
#   deploy/apt-install.sh "BINARY [BINARY...]" PACKAGE [PACKAGE...]
# Quiet on success; on failure prints apt's log. Idempotent.
set -eu
binaries=$1
shift
missing=""
for b in $binaries; do
  command -v "$b" >/dev/null 2>&1 || [ -x "$b" ] || missing="$missing $b"
done
[ -z "$missing" ] && exit 0
echo "installing $* (Debian)"
log=/tmp/remitflow-apt.log
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
       apt-get install -y -qq --no-install-recommends "$@"; } >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
