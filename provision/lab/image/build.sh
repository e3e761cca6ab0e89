#!/usr/bin/env bash
# Build one lab VM image from Debian packages (debootstrap), then `docker import`.
# Usage: build.sh SUITE TAG MIRROR. SUITE: trixie (Debian 13, what nodes boot by default) or
# bookworm (Debian 12, for a node whose image is a debian-12 one). Nothing is pulled from a
# container registry.
set -euo pipefail
suite=$1 tag=$2 mirror=$3
# The apt cache baked in (below): the packages `inv configure` installs on a docker.io farm
# (provision/hosts/steps.py), as this suite has them. Debian 13's docker.io no longer carries
# the docker CLI; docker-cli does.
case $suite in
    trixie) cached="docker.io docker-cli qemu-user-static binfmt-support" ;;
    bookworm) cached="docker.io qemu-user-static binfmt-support" ;;
    *) echo "unknown suite $suite (trixie or bookworm)" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(mktemp -d /var/tmp/archfarm-lab-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT

packages=systemd,systemd-sysv,dbus,openssh-server,sudo,python3,curl,ca-certificates,gnupg,socat,iproute2,procps,less,kmod
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2

# Like a fresh GCE image: no sshd host keys baked in (each VM makes its own at first boot),
# no machine id, apt pointed at the same mirror.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
echo "deb $mirror $suite main" > "$root/etc/apt/sources.list"
echo "deb $mirror $suite-updates main" >> "$root/etc/apt/sources.list"
install -m 0755 "$here/guest-agent.py" "$root/usr/local/sbin/archfarm-guest-agent"
install -m 0644 "$here"/units/*.service "$root/etc/systemd/system/"
for unit in "$here"/units/*.service; do
    ln -sf "/etc/systemd/system/$(basename "$unit")" \
        "$root/etc/systemd/system/multi-user.target.wants/$(basename "$unit")"
done
# Units that make no sense in a container VM and would only slow boot or fail.
for unit in systemd-udevd.service systemd-udev-trigger.service getty@tty1.service \
            systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# One apt cache shared by every lab VM of this suite: the packages of $cached are downloaded
# into the image, with the package lists, so a VM's install downloads nothing and its
# `apt-get update` only revalidates the lists. (debootstrap leaves the .debs it installed in
# the cache: cleaned first, they would only take room.)
chroot "$root" apt-get clean >&2
chroot "$root" apt-get -qq update >&2
# shellcheck disable=SC2086 # $cached is a list of package names
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --download-only \
    --no-install-recommends $cached >&2
rm -f "$root"/var/cache/apt/*.bin

tar -C "$root" -c . | docker import \
    --change 'CMD ["/sbin/init"]' \
    --change 'LABEL archfarm.lab=1' --change "LABEL archfarm.lab.suite=$suite" - "$tag" >&2
echo "$tag"
