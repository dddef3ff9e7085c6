#!/usr/bin/env bash
# Builds the Debian package of the speaker daemon, autoharmonize-node, with
# cargo-deb (installed at a pinned version if missing), and optionally
# checks what is inside.
#
#   scripts/build-deb.sh                 amd64 (or whatever this machine is)
#   scripts/build-deb.sh --arch arm64    cross-build for a 64-bit Raspberry Pi OS
#   scripts/build-deb.sh --check         also list and check the contents
#
# The cross-build needs, on Debian (see docs/deploy.md, "Building the
# package"):
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross libasound2-dev:arm64
# and the Rust standard library for aarch64-unknown-linux-gnu (added with
# rustup when rustup is there).
#
# Prints the path of the .deb as its last line.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# cargo-deb release installed when it is missing; bump deliberately.
CARGO_DEB_VERSION=3.8.0

arch=native
check=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --arch) arch="${2:?--arch needs amd64 or arm64}"; shift 2 ;;
        --arch=*) arch="${1#--arch=}"; shift ;;
        --check) check=true; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "build-deb: $*" >&2; exit 1; }

if ! cargo deb --version >/dev/null 2>&1; then
    echo "cargo-deb is missing: installing cargo-deb $CARGO_DEB_VERSION from crates.io" >&2
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi

host_arch="$(dpkg --print-architecture)"
deb_args=(-p autoharmonize-node --locked)
case "$arch" in
    native|"$host_arch")
        arch="$host_arch"
        ;;
    arm64)
        target=aarch64-unknown-linux-gnu
        command -v aarch64-linux-gnu-gcc >/dev/null ||
            die "aarch64-linux-gnu-gcc not found: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
        alsa_pc=/usr/lib/aarch64-linux-gnu/pkgconfig/alsa.pc
        [[ -f $alsa_pc ]] ||
            die "$alsa_pc not found: dpkg --add-architecture arm64; apt-get update; apt-get install libasound2-dev:arm64"
        if command -v rustup >/dev/null; then
            rustup target add "$target"
        fi
        [[ -d "$(rustc --print sysroot)/lib/rustlib/$target" ]] ||
            die "no Rust standard library for $target (rustup target add $target, or your distribution's package)"
        # Link with the cross gcc; find ALSA's arm64 .pc files (Debian
        # multiarch) instead of the host's; strip with the arm64 binutils.
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
        export PKG_CONFIG_ALLOW_CROSS=1
        export PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_STRIP=aarch64-linux-gnu-strip
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_OBJCOPY=aarch64-linux-gnu-objcopy
        deb_args+=(--target "$target")
        ;;
    *)
        die "unsupported --arch $arch (amd64 on an amd64 machine, or arm64)"
        ;;
esac

# cargo-deb prints the paths of what it wrote: the package (.deb) and its
# debug symbols (-dbgsym .ddeb).
deb="$(cargo deb "${deb_args[@]}" | grep '\.deb$' | tail -n 1)"
[[ -f $deb ]] || die "cargo deb did not report a package (got: $deb)"

if $check; then
    bash scripts/check-deb.sh "$deb" "$arch"
fi
echo "$deb"
