#!/usr/bin/env bash
# Install what the lab needs on a Debian 12 host, as root. Idempotent: installs only what is
# missing. Usage: host-setup.sh MIRROR (the Debian mirror this machine's apt already uses).
set -euo pipefail
mirror=${1:?usage: host-setup.sh MIRROR}
BUILDX_VERSION=0.13.1+ds1-3   # trixie's; bookworm has no docker-buildx
PACKAGES="docker.io containerd iptables qemu-user-static binfmt-support openssh-client
          debootstrap docker-registry socat"

if [ "$(id -u)" != 0 ]; then
    echo "the lab's host setup installs Debian packages and starts dockerd: run it as root" >&2
    exit 2
fi
. /etc/os-release
case " ${ID:-} ${ID_LIKE:-} " in
    *" debian "*) ;;
    *) echo "the lab needs a Debian-like host (apt, dpkg); this is ${PRETTY_NAME:-unknown}" >&2
       exit 2 ;;
esac

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=$(for p in $PACKAGES; do installed "$p" || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "installing: $(echo $missing)"
    apt-get update -qq
    # policy-rc.d: packages must not try to start services; the lab starts what it needs.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

if [ "$(dpkg-query -W -f='${Version}' docker-buildx 2>/dev/null)" != "$BUILDX_VERSION" ]; then
    echo "installing docker-buildx $BUILDX_VERSION from trixie (that package only)"
    tmp=$(mktemp -d)
    mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
    echo "deb $mirror trixie main" > "$tmp/sources.list"
    apt_opts=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o "Dir::Etc::sourceparts=-"
              -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::archives=$tmp/archives"
              -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
    apt-get "${apt_opts[@]}" update -qq
    (cd "$tmp" && apt-get "${apt_opts[@]}" download "docker-buildx=$BUILDX_VERSION")
    dpkg -i "$tmp"/docker-buildx_*.deb
    rm -rf "$tmp"
fi

# arm64 binaries run through QEMU: the kernel's binfmt_misc, shared with every lab VM.
mountpoint -q /proc/sys/fs/binfmt_misc \
    || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
