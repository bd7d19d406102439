#!/bin/sh
# Install PostgreSQL (Debian's package: server binaries under /usr/lib/postgresql/*/bin) unless it is
# there already. Idempotent; a fast no-op when installed. The test suite starts its own server.
set -eu

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

echo "ensure-postgres: installing PostgreSQL with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends postgresql >/dev/null

ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
    echo "ensure-postgres: postgresql installed but no initdb under /usr/lib/postgresql/*/bin" >&2
    exit 1
}
