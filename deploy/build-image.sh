#!/usr/bin/env bash
# Builds the worker's container image with podman from deploy/Containerfile: stages a root
# filesystem under target/image/rootfs (the binary, stripped, and the shared libraries `ldd`
# names, from this machine's glibc), then `podman build` FROM scratch on it.
#
#   deploy/build-image.sh [--profile release|debug] [--tag NAME] [--no-build]
#
# --profile: which cargo build to package (release by default; CI packages the debug build the
#            tests already made, to stay fast). --no-build: package what target/ holds.
# Prints the image name on the last line. Needs cargo, podman, ldd, strip.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
tag=""
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release) dir=release; flag=(--release) ;;
  debug) dir=debug; flag=() ;;
  *) echo "build-image.sh: --profile is release or debug, not $profile" >&2; exit 2 ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
tag="${tag:-localhost/hearsay-worker:$version}"
if [ "$build" = 1 ]; then
  cargo build --locked "${flag[@]}" -p hearsay-worker --bin worker
fi
bin="target/$dir/worker"
[ -x "$bin" ] || { echo "build-image.sh: no $bin (build it, or drop --no-build)" >&2; exit 1; }

stage=target/image
rm -rf "$stage"
root="$stage/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/var/lib/hearsay"
chmod 1777 "$root/tmp"
# The job store's place (HEARSAY_DATA_DIR): writable by the worker's user whoever owns it in
# the image; mount a volume here (Kubernetes: the StatefulSet's claim) so that jobs outlive
# the container.
chmod 1777 "$root/var/lib/hearsay"
strip -o "$root/usr/local/bin/worker" "$bin"
# Every shared library the binary loads, at the path the loader looks for it.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/nonexistent:/sbin/nologin
hearsay:x:10001:10001:Hearsay worker:/nonexistent:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
hearsay:x:10001:
GROUP
# glibc's resolver: /etc/hosts first, then DNS (a Kubernetes pod's resolv.conf).
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
cp deploy/Containerfile "$stage/Containerfile"
podman build --quiet --isolation=chroot -f "$stage/Containerfile" -t "$tag" "$stage" >/dev/null
echo "$tag"
