#!/usr/bin/env bash
# etc-kueue.sh SRC WORK COMMAND...: run COMMAND with directory SRC mounted at /etc/kueue.
#
# hack/cluster.sh starts Kueue through `unshare --mount --propagation private` and this
# script, so the mounts below are made in Kueue's own mount namespace: the host never sees
# them, and they go away when Kueue exits. Kueue v0.17 reads its metrics serving certificate
# from the hard-coded /etc/kueue/metrics/certs when its internal certificate management is
# off. Where the host has no /etc/kueue, /etc is first overlaid in this namespace (upper and
# work directories under WORK, in the cluster's state) so that the mount point can be made
# there without creating anything in the host's /etc.
set -euo pipefail

src=$1 work=$2
shift 2
[[ -d $src ]] || { echo "etc-kueue.sh: no directory $src" >&2; exit 1; }
# Never mount anything in the caller's namespace (run without unshare); when either
# namespace cannot be read, refuse too.
own=$(readlink /proc/self/ns/mnt || true)
caller=$(readlink "/proc/$PPID/ns/mnt" || true)
if [[ -z $own || -z $caller || $own == "$caller" ]]; then
  echo "etc-kueue.sh: not in a mount namespace of its own; run it under unshare --mount" >&2
  exit 1
fi
if [[ ! -d /etc/kueue ]]; then
  mkdir -p "$work/upper" "$work/work"
  mount -t overlay overlay -o "lowerdir=/etc,upperdir=$work/upper,workdir=$work/work" /etc
  mkdir /etc/kueue
fi
mount --bind "$src" /etc/kueue
exec "$@"
