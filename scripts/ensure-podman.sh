#!/bin/sh
# Install podman, runc, busybox-static and debootstrap (for the container tests) unless they are
# there already. Idempotent; a fast no-op when installed. Nothing in /etc is changed: the tests
# point podman at runc and explicit ulimits through CONTAINERS_CONF (tests/fixtures_podman.py).
set -eu

if command -v podman >/dev/null && command -v runc >/dev/null \
    && command -v busybox >/dev/null && command -v debootstrap >/dev/null; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

echo "ensure-podman: installing podman, runc, busybox-static and debootstrap with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
    podman runc catatonit busybox-static debootstrap >/dev/null
