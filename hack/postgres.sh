#!/usr/bin/env bash
# Install PostgreSQL from Debian's packages when no server binary is present.
# Starting and stopping a throw-away cluster is the test fixture's job (tests/pg.py).
set -euo pipefail
find_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && { echo "$d"; return 0; }
  done
  return 1
}
case "${1:-install}" in
  install)
    if find_bindir >/dev/null; then exit 0; fi
    echo "installing PostgreSQL from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    find_bindir >/dev/null
    ;;
  bindir) find_bindir ;;
  *) echo "usage: $0 install|bindir" >&2; exit 2 ;;
esac
