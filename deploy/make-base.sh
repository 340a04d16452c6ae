#!/bin/sh
# deploy/make-base.sh [SUITE [IMAGE]]: makes a minimal Debian base image from the Debian archive that this
# machine's apt uses, for building deploy/Dockerfile where no container registry can be reached:
#   deploy/make-base.sh                       # localhost/macvtap-cni/debian:bookworm-minbase
#   podman build --build-arg BUILD_BASE=localhost/macvtap-cni/debian:bookworm-minbase \
#                --build-arg RUNTIME_BASE=localhost/macvtap-cni/debian:bookworm-minbase -f deploy/Dockerfile .
# mmdebstrap's minbase variant (Essential packages and apt: dash, coreutils, libstdc++6, about 100 MB) is
# piped as a tarball into `podman import`. The image's apt uses the same mirror and the same Acquire
# settings (a snapshot mirror's Release files can be past their Valid-Until). Needs root, mmdebstrap, podman.
# An existing image is kept (it is the cache): remove it with `podman rmi IMAGE` to make it again.
set -eu
suite=${1:-bookworm}
image=${2:-localhost/macvtap-cni/debian:$suite-minbase}

if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
# The first Debian mirror apt is configured with (deb822 sources first, then the one-line format).
mirror=$(apt-get indextargets --format '$(REPO_URI) $(ORIGIN)' 2>/dev/null | awk '$2 == "Debian" && $1 !~ /security/ { print $1; exit }')
[ -n "$mirror" ] || mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || { echo "make-base: no Debian mirror in this machine's apt configuration" >&2; exit 1; }
set --
for opt in $(apt-config dump | sed -n 's/^\(Acquire::\(Check-Valid-Until\|Check-Date\|Retries\)\) "\(.*\)";$/\1=\3/p'); do
  set -- "$@" "--aptopt=${opt%%=*} \"${opt#*=}\""
done
mmdebstrap --quiet --variant=minbase "$@" "$suite" - "deb ${mirror%/} $suite main" |
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$image" >/dev/null
echo "$image"
