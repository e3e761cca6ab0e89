#!/bin/sh
# The lab's SBOM generator, after BuildKit's SBOM scanning protocol
# (https://github.com/moby/buildkit/blob/master/docs/attestations/sbom-protocol.md): for the
# root file system $BUILDKIT_SCAN_SOURCE, and each one in the directory
# $BUILDKIT_SCAN_SOURCE_EXTRAS when that is set and exists, it writes
# $BUILDKIT_SCAN_DESTINATION/<its name>.spdx.json: an in-toto statement whose predicate is an
# SPDX 2.3 document of the Debian packages dpkg records as installed there
# (var/lib/dpkg/status, and var/lib/dpkg/status.d/* as distroless images keep them).
# POSIX sh and awk only: it runs on the lab's busybox image.
set -eu
: "${BUILDKIT_SCAN_SOURCE:?is required}" "${BUILDKIT_SCAN_DESTINATION:?is required}"
export LC_ALL=C   # bytes, not characters, for awk

if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi

# The dpkg records of the root file system $1, each stanza ended by a blank line. A status file
# reached through a symbolic link is left out: it could name a file outside the scanned root.
dpkg_records() {
    for dir in "$1/var" "$1/var/lib" "$1/var/lib/dpkg"; do
        [ -d "$dir" ] && [ ! -L "$dir" ] || return 0
    done
    for file in "$1/var/lib/dpkg/status" "$1"/var/lib/dpkg/status.d/*; do
        if [ -f "$file" ] && [ ! -L "$file" ]; then
            cat "$file"
            echo
        fi
    done
}

# The statement for the root file system $1, on stdout.
scan() {
    name=$(basename "$1")
    unique=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo "$$-$(date +%s)")
    dpkg_records "$1" | SCAN_NAME=$name SCAN_NAMESPACE="$name-$unique" SCAN_CREATED=$created awk '
function value(line) {
    sub(/^[^:]*:[ \t]*/, "", line)
    sub(/[ \t\r]+$/, "", line)
    return line
}
function flush() {
    # No Status field (a distroless status.d entry) counts as installed.
    if (pkg != "" && ver != "" && (status == "" || status ~ / installed$/)) {
        n++; names[n] = pkg; versions[n] = ver
    }
    pkg = ""; ver = ""; status = ""
}
# s as the inside of a JSON string: quote, backslash and control bytes escaped; valid UTF-8
# kept; any other byte (not UTF-8) becomes U+FFFD, so the output is always valid JSON.
function json(s,    out, i, j, k, c, o, lo, hi, b) {
    out = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1); o = ord[c]
        if (c == "\"" || c == "\\") out = out "\\" c
        else if (o < 32 || o == 127) out = out sprintf("\\u%04x", o)
        else if (o < 128) out = out c
        else {
            k = 0; lo = 128; hi = 191
            if (o >= 194 && o <= 223) k = 1
            else if (o >= 224 && o <= 239) { k = 2; if (o == 224) lo = 160; if (o == 237) hi = 159 }
            else if (o >= 240 && o <= 244) { k = 3; if (o == 240) lo = 144; if (o == 244) hi = 143 }
            for (j = 1; j <= k; j++) {
                b = ord[substr(s, i + j, 1)]
                if (b < (j == 1 ? lo : 128) || b > (j == 1 ? hi : 191)) break
            }
            if (k > 0 && j > k) { out = out substr(s, i, k + 1); i += k }
            else out = out "\\ufffd"
        }
    }
    return out
}
# s percent-encoded for a package URL (purl) part.
function purl(s,    out, i, c) {
    out = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        out = out (c ~ /[A-Za-z0-9._~+:-]/ ? c : sprintf("%%%02X", ord[c]))
    }
    return out
}
function spdx_id(s, i) {
    gsub(/[^A-Za-z0-9.-]/, "-", s)
    return "SPDXRef-Package-deb-" s "-" i
}
BEGIN { for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i; n = 0 }
/^[ \t]*$/ { flush(); next }
/^Package:/ { pkg = value($0) }
/^Version:/ { ver = value($0) }
/^Status:/ { status = value($0) }
END {
    flush()
    printf "{\"_type\": \"https://in-toto.io/Statement/v0.1\",\n"
    printf " \"predicateType\": \"https://spdx.dev/Document\",\n \"subject\": [],\n"
    printf " \"predicate\": {\n  \"spdxVersion\": \"SPDX-2.3\",\n"
    printf "  \"dataLicense\": \"CC0-1.0\",\n  \"SPDXID\": \"SPDXRef-DOCUMENT\",\n"
    printf "  \"name\": \"%s\",\n", json(ENVIRON["SCAN_NAME"])
    printf "  \"documentNamespace\": \"https://archfarm.invalid/lab-sbom/%s\",\n", \
        purl(ENVIRON["SCAN_NAMESPACE"])
    printf "  \"creationInfo\": {\"created\": \"%s\",", json(ENVIRON["SCAN_CREATED"])
    printf " \"creators\": [\"Tool: archfarm-lab-sbom-scan\"]},\n  \"packages\": ["
    for (i = 1; i <= n; i++) {
        printf "%s\n   {\"name\": \"%s\", \"SPDXID\": \"%s\",", (i > 1 ? "," : ""), \
            json(names[i]), spdx_id(names[i], i)
        printf " \"versionInfo\": \"%s\", \"downloadLocation\": \"NOASSERTION\",", \
            json(versions[i])
        printf " \"filesAnalyzed\": false,\n    \"externalRefs\": [{\"referenceCategory\":"
        printf " \"PACKAGE-MANAGER\", \"referenceType\": \"purl\", \"referenceLocator\":"
        printf " \"pkg:deb/debian/%s@%s\"}]}", json(purl(names[i])), json(purl(versions[i]))
    }
    printf "%s],\n  \"relationships\": [", (n > 0 ? "\n  " : "")
    for (i = 1; i <= n; i++) {
        printf "%s\n   {\"spdxElementId\": \"SPDXRef-DOCUMENT\", \"relationshipType\":", \
            (i > 1 ? "," : "")
        printf " \"DESCRIBES\", \"relatedSpdxElement\": \"%s\"}", spdx_id(names[i], i)
    }
    printf "%s]\n }\n}\n", (n > 0 ? "\n  " : "")
}'
}

scan "$BUILDKIT_SCAN_SOURCE" \
    > "$BUILDKIT_SCAN_DESTINATION/$(basename "$BUILDKIT_SCAN_SOURCE").spdx.json"
extras=${BUILDKIT_SCAN_SOURCE_EXTRAS:-}
if [ -n "$extras" ] && [ -d "$extras" ]; then
    for root in "$extras"/* "$extras"/.[!.]* "$extras"/..?*; do
        if [ -d "$root" ]; then
            scan "$root" > "$BUILDKIT_SCAN_DESTINATION/$(basename "$root").spdx.json"
        fi
    done
fi
