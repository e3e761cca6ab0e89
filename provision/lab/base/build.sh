#!/usr/bin/env bash
# Build the root file system of one lab base image for one architecture from Debian packages,
# as an image layer: OUT/layer.tar.gz, OUT/diff-id (sha256 of the uncompressed tar) and
# OUT/cmd.json (the image's CMD). The caller pushes it with an image config for linux/ARCH
# (`docker import --platform` does not set the architecture on Debian 12's docker.io).
# Usage: build.sh KIND ARCH MIRROR OUT
#   KIND build: Debian 12 with gcc and libc6-dev (debootstrap; arm64 runs through QEMU binfmt)
#   KIND run:   a small runtime: base-files, libc6, libgcc-s1 and busybox unpacked from .debs
#   KIND sbom:  run's root with sbom-scan.sh as its command: the lab's BuildKit SBOM generator
# Nothing is pulled from a container registry.
set -euo pipefail
kind=$1 arch=$2 mirror=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
root=$(mktemp -d /var/tmp/archfarm-lab-base.XXXXXX)
apt=$root.apt
trap 'rm -rf "$root" "$apt"' EXIT

build_root() {
    debootstrap --variant=minbase --arch="$arch" --include=gcc,libc6-dev \
        bookworm "$root" "$mirror"
    echo "deb $mirror bookworm main" > "$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/var/log/apt/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
    : > "$root/etc/machine-id"
    echo '["/bin/bash"]' > "$out/cmd.json"
}

run_root() {
    # The target architecture's .debs, downloaded with a throw-away apt configuration (its
    # own sources, lists, status and cache: the host's apt state is neither read nor changed).
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/debs"
    echo "deb [arch=$arch] $mirror bookworm main" > "$apt/sources.list"
    : > "$apt/status"
    local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=-"
                -o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=$apt/status"
                -o "Dir::Cache=$apt" -o "Dir::Cache::archives=$apt/archives"
                -o "APT::Architecture=$arch" -o "APT::Architectures=$arch"
                -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
    apt-get "${opts[@]}" update -qq
    (cd "$apt/debs" && apt-get "${opts[@]}" download base-files libc6 libgcc-s1 busybox)
    for deb in "$apt"/debs/*.deb; do
        echo "unpacking $(basename "$deb")"
        dpkg-deb -x "$deb" "$root"
    done
    # The busybox applets as symlinks, where busybox itself says they belong (an arm64
    # busybox runs here through QEMU binfmt).
    chroot "$root" /bin/busybox --list-full | while read -r applet; do
        [ -e "$root/$applet" ] || [ -L "$root/$applet" ] \
            || { mkdir -p "$root/$(dirname "$applet")"; ln -s /bin/busybox "$root/$applet"; }
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
        > "$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
    mkdir -p "$root/root" "$root/tmp" && chmod 1777 "$root/tmp"
    # No documentation, and none of libc6's loadable gconv modules (19 MB): iconv keeps
    # glibc's built-in encodings (ASCII, Latin-1, UTF-8/16/32, UCS-2/4).
    rm -rf "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/lintian \
        "$root"/usr/share/info "$root"/usr/share/common-licenses "$root"/usr/lib/*-linux-gnu/gconv
    echo '["/bin/sh"]' > "$out/cmd.json"
}

sbom_root() {
    run_root
    install -D -m 0755 "$here/sbom-scan.sh" "$root/usr/local/bin/archfarm-sbom-scan"
    echo '["/usr/local/bin/archfarm-sbom-scan"]' > "$out/cmd.json"
}

mkdir -p "$out"
case $kind in
    build) build_root ;;
    run) run_root ;;
    sbom) sbom_root ;;
    *) echo "unknown kind $kind (build, run or sbom)" >&2; exit 2 ;;
esac
echo "root file system: $(du -sh "$root" | cut -f1)"
tar -C "$root" --numeric-owner --sort=name -c . \
    | tee >(sha256sum | cut -d' ' -f1 > "$out/diff-id") | gzip -n -6 > "$out/layer.tar.gz"
wait
echo "layer: $(du -h "$out/layer.tar.gz" | cut -f1) compressed"
