#!/usr/bin/env bash
# Installs the Debian packages dms needs, only those that are missing.
#   libgmp-dev                  builds fastecdsa (a py-libp2p dependency)
#   clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt
#                               build the WASM fixtures and examples from C / WAT
#   bubblewrap                  optional sandbox for the process executor
#   podman runc busybox-static  Docker-compatible API for the docker executor's tests
#   iproute2                    network namespaces for multi-host tests
set -euo pipefail
wanted=(libgmp-dev clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt bubblewrap podman runc
        busybox-static iproute2)
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
