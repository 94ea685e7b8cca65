#!/usr/bin/env bash
# Build a LOCAL STAND-IN for docker.io/library/python:3.11-slim (the FROM of BentoML's generated Dockerfile).
#
# No container registry is reachable from these machines, so the base image is bootstrapped from the Debian
# mirror apt already uses (Debian bookworm's python3 3.11.x, not the official python image) and tagged with the
# official name. Idempotent: does nothing when the tag exists. Needs root (debootstrap/chroot) and podman.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/scripts/containers.conf}"

IMAGE="${BASE_IMAGE:-docker.io/library/python:3.11-slim}"
SUITE="${DEBIAN_SUITE:-bookworm}"

if podman image exists "$IMAGE"; then
  echo "base image $IMAGE already present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "make_base_image.sh: debootstrap needs root" >&2
  exit 1
fi
for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "make_base_image.sh: $tool is not installed" >&2; exit 1; }
done

# The Debian mirror apt is configured with (deb822 .sources first, then one-line sources.list).
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
: "${mirror:?no Debian mirror found in /etc/apt/sources.list(.d); set DEBIAN_MIRROR}"

rootfs=$(mktemp -d /var/tmp/python-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $SUITE from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
  "$SUITE" "$rootfs" "$mirror" >/dev/null

# HTTPS leaves this machine through a proxy with its own CA: the image build's pip/uv steps need it.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi
rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
ln -sf python3 "$rootfs/usr/bin/python"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . | podman import --quiet \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - localhost/python-base >/dev/null
podman tag localhost/python-base "$IMAGE"
echo "built $IMAGE (local stand-in: Debian $SUITE python3 $(chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())'))"
