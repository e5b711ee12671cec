#!/bin/sh
# A local stand-in for python:3.11-slim, for machines that reach no container registry:
# debootstrap a minimal Debian bookworm with python3 (3.11) and python3-venv, then `docker import` it.
#
#   sh deploy/base-image.sh            # prints the tag, e.g. imgrec-base:bookworm-py311-1a2b3c4d5e6f
#   docker build -f deploy/Dockerfile --network host --build-arg BASE_IMAGE=<that tag> -t imgrec .
#
# Needs root, debootstrap and a running Docker engine. The Debian mirror is read from this machine's own
# apt sources (/etc/apt/sources.list.d/*.sources or /etc/apt/sources.list), or DEBIAN_MIRROR when set.
# This machine's CA bundle is copied in, and pip inside the image is pointed at it, so that a build with
# `--network host` reaches the package index this machine uses (PIP_INDEX_URL / PIP_EXTRA_INDEX_URL /
# PIP_TRUSTED_HOST, or pip's own config, passed through when they name http(s) indexes).
# The tag is a hash of this script and of what it copies in, so the image is made once and then reused.
set -eu

suite=bookworm
packages=python3,python3-venv,ca-certificates
ca_bundle=/etc/ssl/certs/ca-certificates.crt

log() { echo "base-image: $*" >&2; }

apt_mirror() {
    # deb822 sources first (Debian 12's default), then one-line sources; the first non-security archive.
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        awk -v suite="$suite" '
            /^[[:space:]]*$/ { if (uris != "" && suites ~ ("(^| )" suite "( |$)")) { print uris; exit } uris = ""; suites = "" }
            /^URIs:/ { uris = $2 }
            /^Suites:/ { $1 = ""; suites = substr($0, 2) }
            END { if (uris != "" && suites ~ ("(^| )" suite "( |$)")) print uris }
        ' "$file" | grep -v -e security | head -n 1
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        sed -n -e 's/\[[^]]*\]//' -e "s/^deb[[:space:]]\+\([^[:space:]]\+\)[[:space:]]\+$suite[[:space:]].*/\1/p" "$file" \
            | grep -v -e security | head -n 1
    done
}

pip_setting() {  # PIP_* environment variable, else pip's config (global.*), else nothing
    value=$(printenv "PIP_$1" || true)
    if [ -z "$value" ] && command -v pip3 >/dev/null 2>&1; then
        value=$(pip3 config get "global.$(echo "$1" | tr 'A-Z_' 'a-z-')" 2>/dev/null || true)
    fi
    # Only network indexes make sense inside the image (file:// ones are this machine's folders).
    printf '%s\n' $value | grep -E -i '^https?://|^[a-z0-9.-]+(:[0-9]+)?$' | tr '\n' ' ' | sed 's/ $//'
}

pip_conf() {
    echo "[global]"
    echo "cert = $ca_bundle"
    index=$(pip_setting INDEX_URL); extra=$(pip_setting EXTRA_INDEX_URL); trusted=$(pip_setting TRUSTED_HOST)
    [ -z "$index" ] || echo "index-url = $index"
    [ -z "$extra" ] || echo "extra-index-url = $extra"
    [ -z "$trusted" ] || echo "trusted-host = $trusted"
}

mirror=${DEBIAN_MIRROR:-$(apt_mirror | head -n 1)}
[ -n "$mirror" ] || { log "no Debian mirror found in this machine's apt sources; set DEBIAN_MIRROR"; exit 1; }
[ -f "$ca_bundle" ] || { log "no CA bundle at $ca_bundle"; exit 1; }

conf=$(pip_conf)
key=$( { cat "$0"; printf '%s\n' "$conf"; cat "$ca_bundle"; } | sha256sum | cut -c1-12)
tag=${IMGREC_BASE_TAG:-imgrec-base:$suite-py311-$key}

if docker image inspect "$tag" >/dev/null 2>&1; then
    log "reusing $tag"
    echo "$tag"
    exit 0
fi

command -v debootstrap >/dev/null 2>&1 || { log "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
root=$(mktemp -d "${TMPDIR:-/tmp}/imgrec-base.XXXXXX")
trap 'rm -rf "$root"' EXIT
log "debootstrap $suite from the machine's mirror into $root"
debootstrap --variant=minbase --include="$packages" "$suite" "$root/fs" "$mirror" >"$root/debootstrap.log" 2>&1 \
    || { tail -n 30 "$root/debootstrap.log" >&2; exit 1; }

cp "$ca_bundle" "$root/fs$ca_bundle"
printf '%s\n' "$conf" >"$root/fs/etc/pip.conf"
# What python:3.11-slim leaves out too: package caches and lists, docs, man pages, locales.
rm -rf "$root"/fs/var/cache/apt/archives/*.deb "$root"/fs/var/lib/apt/lists/* "$root"/fs/usr/share/doc/* \
    "$root"/fs/usr/share/man/* "$root"/fs/usr/share/info/* "$root"/fs/var/log/*.log
find "$root/fs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +

tar -C "$root/fs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
log "made $tag"
echo "$tag"
