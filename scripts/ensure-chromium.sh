#!/bin/sh
# Install Debian's Chromium (for the browser tests, driven by Playwright) unless it is there
# already. Idempotent; a fast no-op when installed. `playwright install` is never run: it would
# download a browser build of its own.
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

echo "ensure-chromium: installing chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null

[ -x /usr/bin/chromium ] || {
    echo "ensure-chromium: chromium installed but /usr/bin/chromium is missing" >&2
    exit 1
}
