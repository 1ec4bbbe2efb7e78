#!/usr/bin/env bash
# Installs every Debian package that the build, the local stack, the tests
# and the benchmarks need. Idempotent: quiet and fast when all is there.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates curl
  librdkafka-dev libpq-dev libavro-dev libuv1-dev libcmocka-dev
  libjansson-dev libsodium-dev libssl-dev libwslay-dev node-llhttp uthash-dev
  libcurl4-openssl-dev
  postgresql postgresql-client openjdk-17-jdk-headless maven kcat
  python3 python3-venv valgrind procps iproute2 clang libclang-rt-14-dev
  clang-format systemd nginx
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
