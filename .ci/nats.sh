#!/usr/bin/env bash
# Installs nats-server (Debian's package, 2.9 or later) when it is missing,
# for the cluster tests (`cargo test --features nats`). The tests start and
# stop their own nats-server processes on free ports; nothing is left running.
set -euo pipefail

have_nats() {
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]
}

if ! have_nats; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "nats-server is missing and apt-get is not available: install nats-server 2.9 or later" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
fi

if command -v nats-server >/dev/null 2>&1; then
  nats-server --version
else
  /usr/sbin/nats-server --version
fi
