#!/bin/sh
# install-cni [SOURCE [BIN_DIR]]: installs the macvtap CNI executable into the node's CNI bin directory.
# The DaemonSet's init container runs it (image: /usr/local/bin/install-cni; defaults below).
#
#  1. Checks that SOURCE runs on this node before touching BIN_DIR: same architecture as the node, and it
#     answers CNI_COMMAND=VERSION when run by the node's own dynamic loader and libraries (glibc >= 2.28,
#     libstdc++, libatomic). The node's root file system is mounted at $MACVTAP_HOST_ROOT (default
#     /host/root; the DaemonSet mounts it read-only). A node that cannot run it gets one line naming what is
#     missing, and the pod fails here rather than in every later pod's network set-up inside Multus.
#  2. Copies it into a temporary file in BIN_DIR, flushes it to disk, and renames it over BIN_DIR/macvtap:
#     a runtime never runs a half-written file, and an ADD already running keeps its old one. Temporary
#     files of an earlier run that was killed (SIGKILL skips the trap) are removed first.
#  3. Writes the CNI's host configuration next to it, BIN_DIR/macvtap.conf.json, the same way (temporary
#     file, rename): the settings only the node admin controls (README "Security"). From the environment:
#     MACVTAP_OWNERSHIP (enforce, warn or off; default enforce), MACVTAP_KUBELET_ROOT (default
#     /var/lib/kubelet) and MACVTAP_STATE_DIR (default /var/lib/macvtap-cni). Nothing is installed when one
#     of them is invalid.
# Only POSIX sh and coreutils (od, chroot, mktemp, cp, chmod, sync, mv, rm, head, tr) are used.
set -eu

src=${1:-/usr/local/bin/macvtap}
dir=${2:-/host/opt/cni/bin}
host_root=${MACVTAP_HOST_ROOT:-/host/root}
name=macvtap
me='macvtap install-cni'
conf=macvtap.conf.json
ownership=${MACVTAP_OWNERSHIP:-enforce}
kubelet_root=${MACVTAP_KUBELET_ROOT:-/var/lib/kubelet}
state_dir=${MACVTAP_STATE_DIR:-/var/lib/macvtap-cni}

fail() {
  echo "$me: $*; nothing was installed" >&2
  exit 1
}

# The ELF machine field (2 bytes at offset 18) as hex, or "not-elf" (little-endian targets only).
elf_machine() {
  if [ "$(od -An -c -N4 "$1" 2>/dev/null | tr -d ' \n')" != '177ELF' ]; then
    echo not-elf
    return
  fi
  od -An -tx1 -j18 -N2 "$1" | tr -d ' \n'
}

machine_name() {
  case $1 in
  3e00) echo x86-64 ;;
  b700) echo aarch64 ;;
  *) echo "ELF machine 0x$1" ;;
  esac
}

# The glibc dynamic loader an executable for that machine names (PT_INTERP).
loader_of() {
  case $1 in
  3e00) echo /lib64/ld-linux-x86-64.so.2 ;;
  b700) echo /lib/ld-linux-aarch64.so.1 ;;
  esac
}

# What the node runs, told by the loaders it has (only names are checked: links in the node's root may be
# absolute, and they resolve only inside the chroot below).
node_kind() {
  for entry in x86-64:/lib64/ld-linux-x86-64.so.2 aarch64:/lib/ld-linux-aarch64.so.1 s390x:/lib/ld64.so.1 \
    ppc64le:/lib64/ld64.so.2 musl:/lib/ld-musl-x86_64.so.1 musl:/lib/ld-musl-aarch64.so.1; do
    if [ -e "$host_root${entry#*:}" ] || [ -L "$host_root${entry#*:}" ]; then
      echo "${entry%%:*}"
      return
    fi
  done
  echo 'an unknown system'
}

has() { [ -e "$host_root$1" ] || [ -L "$host_root$1" ]; }

# An absolute path that can go into JSON as it is (no quote, backslash or control character).
json_path() {
  case $2 in
  /*) ;;
  *) fail "$1 must be an absolute path, got '$2'" ;;
  esac
  case $2 in
  *[\\\"]* | *[[:cntrl:]]*) fail "$1 must not contain quotes, backslashes or control characters" ;;
  esac
}
case $ownership in
enforce | warn | off) ;;
*) fail "MACVTAP_OWNERSHIP must be enforce, warn or off, got '$ownership'" ;;
esac
json_path MACVTAP_KUBELET_ROOT "$kubelet_root"
json_path MACVTAP_STATE_DIR "$state_dir"

[ -f "$src" ] || fail "$src does not exist"
[ -d "$dir" ] || fail "the CNI bin directory $dir does not exist"

[ -d "$host_root/proc/self" ] || fail "the node's root is not mounted at $host_root (with its /proc)"
machine=$(elf_machine "$src")
loader=$(loader_of "$machine")
[ -n "$loader" ] || fail "$src is not an x86-64 or aarch64 executable ($(machine_name "$machine"))"
if ! has "$loader"; then
  fail "$src is built for $(machine_name "$machine") with glibc but this node runs $(node_kind) (it has no $loader): deploy the image built for the node's architecture"
fi

# Run it as a runtime would on the node: chrooted into the node's root, so the node's loader, ld.so.cache
# and libraries resolve it; exec'd through /proc/self/fd, so it need not be copied anywhere first.
chroot=$(command -v chroot)
rc=0
out=$(env -i CNI_COMMAND=VERSION "$chroot" "$host_root" /proc/self/fd/3 3<"$src" </dev/null 2>&1) || rc=$?
case $rc:$out in
0:*supportedVersions*) ;;
*"chroot: cannot change root"*) fail "cannot chroot into the node's root $host_root (the init container must be privileged)" ;;
*"GLIBC_"*"not found"*) reason="the node's glibc is older than 2.28" ;;
*"GLIBCXX_"*"not found"* | *"CXXABI_"*"not found"*) reason="the node's libstdc++.so.6 is older than the executable needs" ;;
*"libatomic.so.1"*) reason="the node has no libatomic.so.1, which the embedded Node links (package libatomic1 on Debian and Ubuntu, libatomic on RHEL, Fedora and SUSE)" ;;
*"cannot open shared object file"*) reason="the node lacks a library the executable links" ;;
*) reason="it does not answer VERSION on this node (exit status $rc)" ;;
esac
if [ -n "${reason:-}" ]; then
  fail "$src cannot run on this node: $reason: $(printf '%s\n' "$out" | head -n 1)"
fi

rm -f "$dir/.$name".* "$dir/.$name-conf".*
tmp=$(mktemp "$dir/.$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
cp "$src" "$tmp" || fail "cannot copy $src into $dir"
chmod 0755 "$tmp"
# The data reaches the disk before the name points at it, and the rename before we report success.
sync "$tmp"
mv -f "$tmp" "$dir/$name"

# The host configuration, after the executable (a failed copy above leaves the old pair in place).
tmp=$(mktemp "$dir/.$name-conf.XXXXXX")
printf '{"ownership": "%s", "kubeletRoot": "%s", "stateDir": "%s"}\n' "$ownership" "$kubelet_root" "$state_dir" >"$tmp" ||
  { echo "$me: installed $name but cannot write $conf into $dir" >&2; exit 1; }
chmod 0644 "$tmp"
sync "$tmp"
mv -f "$tmp" "$dir/$conf"
trap - EXIT
sync "$dir"
echo "$me: installed $name and $conf (ownership: $ownership) into the node's CNI bin directory"
