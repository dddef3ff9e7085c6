#!/usr/bin/env bash
# Checks a built autoharmonize-node .deb: its control fields and that it
# carries the binary, the unit, the conffile, the sysusers.d and tmpfiles.d
# files, and maintainer scripts that create the user and enable the unit.
#
#   scripts/check-deb.sh PATH.deb [ARCH]
#
# Exits non-zero, naming what is missing, on the first problem.
set -euo pipefail

deb="${1:?usage: check-deb.sh PATH.deb [ARCH]}"
arch="${2:-$(dpkg --print-architecture)}"

fail() { echo "check-deb: $deb: $*" >&2; exit 1; }

contents="$(dpkg-deb -c "$deb")"
field() { dpkg-deb -f "$deb" "$1"; }

[[ "$(field Package)" == autoharmonize-node ]] || fail "Package is $(field Package)"
[[ "$(field Architecture)" == "$arch" ]] || fail "Architecture is $(field Architecture), not $arch"
field Depends | grep -q 'systemd' || fail "Depends lacks systemd: $(field Depends)"
field Depends | grep -q 'libc6' || fail "Depends lacks libc6: $(field Depends)"

# path (as dpkg-deb -c prints it) and the permissions it must have.
expect=(
    "./usr/bin/autoharmonize-node -rwxr-xr-x"
    "./usr/lib/systemd/system/autoharmonize-node.service -rw-r--r--"
    "./etc/autoharmonize/node.toml -rw-r--r--"
    "./usr/lib/sysusers.d/autoharmonize-node.conf -rw-r--r--"
    "./usr/lib/tmpfiles.d/autoharmonize-node.conf -rw-r--r--"
    "./usr/share/doc/autoharmonize-node/deploy.md -rw-r--r--"
)
for line in "${expect[@]}"; do
    path="${line% *}"
    mode="${line##* }"
    got="$(awk -v p="$path" '$6 == p { print $1 }' <<<"$contents")"
    [[ -n $got ]] || fail "missing $path"
    [[ $got == "$mode" ]] || fail "$path has mode $got, not $mode"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -e "$deb" "$tmp"
grep -qx '/etc/autoharmonize/node.toml' "$tmp/conffiles" ||
    fail "/etc/autoharmonize/node.toml is not a conffile"
postinst="$tmp/postinst"
[[ -x $postinst ]] || fail "no executable postinst"
# Commands only (comments may name them too): the line where each starts.
command_line() { grep -nE "^[[:space:]]*$1" "$postinst" | head -n 1 | cut -d: -f1; }
sysusers_at="$(command_line 'systemd-sysusers .*autoharmonize-node\.conf')"
tmpfiles_at="$(command_line 'systemd-tmpfiles --create .*autoharmonize-node\.conf')"
[[ -n $sysusers_at ]] || fail "postinst does not create the user"
[[ -n $tmpfiles_at ]] || fail "postinst does not create the directories"
[[ -n "$(command_line 'deb-systemd-helper enable autoharmonize-node\.service')" ]] ||
    fail "postinst does not enable the unit"
# The user must exist before its directories are created.
((sysusers_at < tmpfiles_at)) || fail "postinst creates directories before the user"
sh -n "$postinst" || fail "postinst is not valid sh"
[[ -f $tmp/prerm && -f $tmp/postrm ]] || fail "no prerm/postrm to stop and clean up the unit"

# Every shared library the binary needs is depended on (dpkg-shlibdeps
# via cargo-deb's $auto): libasound2 once the binary links ALSA.
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/autoharmonize-node >"$tmp/bin"
while read -r lib; do
    case "$lib" in
        libasound.so.*) pkg=libasound2 ;;
        libc.so.*|libm.so.*|libgcc_s.so.*|ld-linux*) pkg=libc6 ;;
        *) pkg="${lib%%.so*}" ;;
    esac
    [[ $pkg == libgcc_s ]] && pkg=libgcc
    field Depends | grep -q "$pkg" || fail "the binary needs $lib but Depends lacks $pkg: $(field Depends)"
done < <(readelf -d "$tmp/bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')

# The packaged unit and example config are the repository's (the script
# runs from the repository root).
packaged() { dpkg-deb --fsys-tarfile "$deb" | tar -xO "$1"; }
cmp -s <(packaged ./usr/lib/systemd/system/autoharmonize-node.service) systemd/autoharmonize-node.service ||
    fail "the packaged unit differs from systemd/autoharmonize-node.service"
cmp -s <(packaged ./etc/autoharmonize/node.toml) systemd/node.toml.example ||
    fail "the packaged config differs from systemd/node.toml.example"

echo "check-deb: $deb: ok ($(wc -l <<<"$contents") entries)"
dpkg-deb -f "$deb" Package Version Architecture Depends Installed-Size | sed 's/^/  /'
