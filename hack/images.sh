#!/usr/bin/env bash
# Container images for the local cluster's containerd node, as docker-archive tarballs built
# from local parts only: no Docker engine, no registry.
#
# Debian bookworm packages come from apt (`apt-get download`, unpacked with `dpkg-deb -x`; no
# maintainer script runs), the pause binary is compiled from Kubernetes' own
# build/pause/linux/pause.c out of the Go module cache, and hack/images/docker_archive.py
# turns root-filesystem directories into an image: sorted entries, fixed mtimes, numeric
# owners, so the same inputs give the same image ID. See docs/images.md.
#
#   hack/images.sh build [NAME...]   build the images (default: all) into CACHE/images/NAME.tar
#                                    and print each path; an image whose inputs (debs, binary,
#                                    this script, helper, config) are unchanged is not rebuilt
#   hack/images.sh import --address SOCK [--snapshotter S] [NAME...]
#                                    ctr --address SOCK -n k8s.io images import each tarball
#                                    (default: all), building those that do not exist yet
#   hack/images.sh refs              print NAME=REF lines (the tags inside the tarballs)
#
# Images (NAME: ref):
#   pause:     localhost/carbonshift/pause:3.10        CRI sandbox image (pause.c, static)
#   python:    localhost/carbonshift/python:3.11       python3 on Debian, runs examples/
#   operator:  localhost/carbonshift/carbonshift:dev   the final stage of ./Dockerfile
#
# Settings (environment):
#   CARBONSHIFT_CACHE_DIR          default .cache; tarballs go to CACHE/images
#   CARBONSHIFT_IMAGES_DEB_CACHE   downloaded .debs (default CACHE/images/debs); point several
#                                  cache dirs at one to download each package once
#   CARBONSHIFT_OPERATOR_BINARY    the operator binary (default target/release/carbonshift)
#   CARBONSHIFT_IMAGE_VERSION      the operator's org.opencontainers.image.version label
#                                  (default dev, the Dockerfile's ARG VERSION)
#   CARBONSHIFT_IMAGE_REVISION     its org.opencontainers.image.revision label (default unknown,
#                                  the Dockerfile's ARG REVISION)
#   SOURCE_DATE_EPOCH              timestamp of every file and of the images (default 0)
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.env
source "$ROOT/hack/versions.env"

CACHE=${CARBONSHIFT_CACHE_DIR:-$ROOT/.cache}
IMAGES=$CACHE/images
DEBS=${CARBONSHIFT_IMAGES_DEB_CACHE:-$IMAGES/debs}
BINARY=${CARBONSHIFT_OPERATOR_BINARY:-$ROOT/target/release/carbonshift}
VERSION=${CARBONSHIFT_IMAGE_VERSION:-dev}
REVISION=${CARBONSHIFT_IMAGE_REVISION:-unknown}
EPOCH=${SOURCE_DATE_EPOCH:-0}
HELPERS=$ROOT/hack/images

NAMES=(pause python operator)
declare -A REFS=(
  [pause]=localhost/carbonshift/pause:3.10
  [python]=localhost/carbonshift/python:3.11
  [operator]=localhost/carbonshift/carbonshift:dev
)

# python: the closure of these roots (Depends and Pre-Depends, no Recommends) as apt resolves
# it, without EXCLUDE: dpkg and tar are there only for maintainer scripts, which never run in
# the image. EXTRA is unpacked without its dependencies: python-is-python3 is one symlink
# (/usr/bin/python) but Depends on the python3 metapackage, and base-files (os-release)
# Pre-Depends on awk.
PYTHON_ROOTS=(python3-minimal libpython3.11-stdlib)
PYTHON_EXCLUDE=(dpkg tar)
PYTHON_EXTRA=(python-is-python3 base-files)
# operator: exactly the packages of gcr.io/distroless/cc-debian12, no closure.
OPERATOR_DEBS=(base-files netbase tzdata libc6 libgcc-s1 libgomp1 libstdc++6 libssl3 ca-certificates)
# The CA bundle is what ca-certificates' postinst would generate; the host's is that file.
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

WORK=
cleanup() { if [[ -n $WORK ]]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT

work_dir() {
  if [[ -z $WORK ]]; then
    mkdir -p "$IMAGES"
    WORK=$(mktemp -d "$IMAGES/.work.XXXXXX")
  fi
}

arch() {
  local a
  a=$(dpkg --print-architecture)
  case $a in
    amd64 | arm64) echo "$a" ;;
    *) die "unsupported architecture $a (amd64 and arm64 are)" ;;
  esac
}

# --- Debian packages --------------------------------------------------------------------

APT_LISTS_CHECKED=
ensure_apt_lists() {
  [[ -z $APT_LISTS_CHECKED ]] || return 0
  APT_LISTS_CHECKED=1
  local policy
  policy=$(apt-cache policy python3.11-minimal 2>/dev/null || true)
  if [[ $policy != *"Candidate: "[0-9]* ]]; then
    log "apt has no candidate for python3.11-minimal: apt-get update"
    apt-get update -qq >&2
  fi
}

# What apt would resolve differently after a change: its sources, pins and package lists.
apt_state() {
  stat -c '%n %s %Y' /etc/apt/sources.list /etc/apt/sources.list.d/* /etc/apt/preferences \
    /etc/apt/preferences.d/* /var/lib/apt/lists/*Packages* 2>/dev/null || true
}

# resolve_closure ROOT... -- EXCLUDE...: NAME=VERSION of each package `apt-get install ROOT...`
# would install on an empty system on which EXCLUDE are installed (with no dependencies).
resolve_closure() {
  local roots=()
  while (($#)) && [[ $1 != -- ]]; do roots+=("$1"); shift; done
  (($#)) && shift
  work_dir
  local status=$WORK/dpkg-status plan=$WORK/apt-plan
  : >"$status"
  if (($#)); then
    apt-cache show --no-all-versions "$@" |
      awk '/^(Package|Version|Architecture):/ { print } /^$/ { print "Status: install ok installed\n" }' \
        >"$status"
  fi
  apt-get -s -o Dir::State::status="$status" -o APT::Install-Recommends=false \
    -o APT::Install-Suggests=false install "${roots[@]}" >"$plan" 2>&1 ||
    die "apt cannot resolve ${roots[*]}: $(tail -5 "$plan")"
  awk '$1 == "Inst" { v = $3; sub(/^\(/, "", v); print $2 "=" v }' "$plan" | sort
}

# fetch_debs SPEC...: download the .debs of SPEC (NAME or NAME=VERSION) into DEBS unless they
# are there with the archive's SHA256; print "FILE SHA256" lines, sorted.
fetch_debs() {
  mkdir -p "$DEBS"
  work_dir
  local uris=$WORK/uris file sha missing=()
  apt-get download --print-uris "$@" >"$uris" 2>"$uris.err" ||
    die "apt-get download --print-uris $*: $(tail -5 "$uris.err")"
  while read -r _ file _ sha; do
    sha=${sha#SHA256:}
    if [[ ! -f $DEBS/$file ]] || ! echo "$sha  $DEBS/$file" | sha256sum -c --status; then
      missing+=("$file")
    fi
  done <"$uris"
  if ((${#missing[@]})); then
    log "downloading ${#missing[@]} .deb(s) into $DEBS"
    local tmp
    tmp=$(mktemp -d "$DEBS/.download.XXXXXX")
    # Root downloads into a directory of its own; apt's _apt sandbox user could not write it.
    if ! (cd "$tmp" && apt-get -qq -o APT::Sandbox::User=root download "$@" >&2); then
      rm -rf "$tmp"
      die "apt-get download $* failed"
    fi
    while read -r _ file _ sha; do
      [[ -f $tmp/$file ]] || continue
      echo "${sha#SHA256:}  $tmp/$file" | sha256sum -c --status || { rm -rf "$tmp"; die "$file: SHA256 mismatch"; }
      mv -f "$tmp/$file" "$DEBS/$file"
    done <"$uris"
    rm -rf "$tmp"
  fi
  awk '{ sub(/^SHA256:/, "", $4); print $2, $4 }' "$uris" | sort
}

# deb_list NAME: the "FILE SHA256" lines of an image's packages, each present in DEBS.
# Resolving costs a few apt runs of a second each, so the answer is kept in
# IMAGES/NAME.debs and reused while apt's state and the package names are unchanged.
deb_key() {
  { apt_state; declare -p PYTHON_ROOTS PYTHON_EXCLUDE PYTHON_EXTRA OPERATOR_DEBS; } |
    sha256sum | cut -d' ' -f1
}

deb_list() {
  local name=$1 list=$IMAGES/$1.debs key
  key=$(deb_key)
  if [[ -f $list && $(head -1 "$list") == "# $key" ]] &&
    tail -n +2 "$list" | awk -v d="$DEBS" '{ print $2 "  " d "/" $1 }' | sha256sum -c --status 2>/dev/null; then
    tail -n +2 "$list"
    return
  fi
  ensure_apt_lists
  key=$(deb_key)
  case $name in
    python)
      local specs
      resolve_closure "${PYTHON_ROOTS[@]}" -- "${PYTHON_EXCLUDE[@]}" >"$WORK/python-closure"
      mapfile -t specs <"$WORK/python-closure"
      fetch_debs "${specs[@]}" "${PYTHON_EXTRA[@]}" >"$WORK/$name.debs-new"
      ;;
    operator) fetch_debs "${OPERATOR_DEBS[@]}" >"$WORK/$name.debs-new" ;;
  esac
  { echo "# $key"; cat "$WORK/$name.debs-new"; } >"$list"
  cat "$WORK/$name.debs-new"
}

# unpack_debs ROOTFS LIST: extract each .deb of LIST (fetch_debs output) and record its
# control fields in var/lib/dpkg/status.d/NAME as distroless does, for image scanners.
unpack_debs() {
  local rootfs=$1 list=$2 file _sha pkg
  mkdir -p "$rootfs/var/lib/dpkg/status.d"
  while read -r file _sha; do
    dpkg-deb -x "$DEBS/$file" "$rootfs"
    pkg=$(dpkg-deb -f "$DEBS/$file" Package)
    dpkg-deb -f "$DEBS/$file" >"$rootfs/var/lib/dpkg/status.d/$pkg"
  done <"$list"
  # Documentation except the licences (copyright), which the images must keep.
  rm -rf "$rootfs/usr/share/man" "$rootfs/usr/share/info" "$rootfs/usr/share/lintian"
  if [[ -d $rootfs/usr/share/doc ]]; then
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  fi
}

# skeleton ROOTFS PASSWD GROUP: the files a package-only root filesystem lacks.
skeleton() {
  local rootfs=$1
  install -d -m 0755 "$rootfs/etc" "$rootfs/home"
  install -d -m 0700 "$rootfs/root"
  install -d -m 1777 "$rootfs/tmp"
  printf '%s' "$2" >"$rootfs/etc/passwd"
  printf '%s' "$3" >"$rootfs/etc/group"
  chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
}

# --- images -------------------------------------------------------------------------------

# archive NAME CONFIG LAYER_DIR CREATED_BY [LAYER_DIR CREATED_BY...] [-- ARG...]
archive() {
  local name=$1 config=$2 layers=()
  shift 2
  while (($#)) && [[ $1 != -- ]]; do layers+=(--layer "$1" --created-by "$2"); shift 2; done
  (($#)) && shift
  local args=() a
  for a in "$@"; do args+=(--arg "$a"); done
  python3 "$HELPERS/docker_archive.py" --output "$IMAGES/$name.tar" --tag "${REFS[$name]}" \
    --config "$HELPERS/$config" --created "$EPOCH" --architecture "$(arch)" \
    "${layers[@]}" "${args[@]}" >"$WORK/$name.id"
  log "$name: ${REFS[$name]} $(cat "$WORK/$name.id")"
}

# Every image depends on this script, the archive helper and its config.
common_inputs() {
  sha256sum "$ROOT/hack/images.sh" "$HELPERS/docker_archive.py" "$HELPERS/$1.json" |
    sed "s|$ROOT/||"
  echo "SOURCE_DATE_EPOCH=$EPOCH arch=$(arch) python3=$(python3 -c 'import sys; print(sys.version.split()[0])')"
}

pause_source() {
  local json
  json=$(cd "$ROOT/hack/tools" &&
    GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION") ||
    die "go mod download k8s.io/kubernetes@$K8S_VERSION failed"
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])' <<<"$json"
}

inputs_pause() {
  PAUSE_DIR=$(pause_source)/build/pause
  [[ -f $PAUSE_DIR/linux/pause.c ]] || die "no build/pause/linux/pause.c in k8s.io/kubernetes@$K8S_VERSION"
  # The version pause -v prints: upstream's TAG and, for its REV, the Kubernetes release.
  PAUSE_TAG=$(sed -n 's/^TAG ?= *//p' "$PAUSE_DIR/Makefile")
  common_inputs pause
  sha256sum "$PAUSE_DIR/linux/pause.c" | sed "s|$PAUSE_DIR/||"
  echo "K8S_VERSION=$K8S_VERSION TAG=$PAUSE_TAG"
  gcc --version | head -1
}

build_pause() {
  local rootfs=$WORK/pause-rootfs
  install -d -m 0755 "$rootfs"
  # upstream's CFLAGS (build/pause/Makefile)
  gcc -Os -Wall -Werror -static "-DVERSION=v$PAUSE_TAG-$K8S_VERSION" \
    -o "$rootfs/pause" "$PAUSE_DIR/linux/pause.c"
  strip "$rootfs/pause"
  chmod 0755 "$rootfs/pause"
  archive pause pause.json "$rootfs" "pause.c of k8s.io/kubernetes@$K8S_VERSION (gcc -Os -static)"
}

inputs_python() {
  deb_list python >"$WORK/python-debs"
  common_inputs python
  cat "$WORK/python-debs"
}

build_python() {
  local rootfs=$WORK/python-rootfs
  install -d -m 0755 "$rootfs"
  unpack_debs "$rootfs" "$WORK/python-debs"
  skeleton "$rootfs" \
    'root:x:0:0:root:/root:/sbin/nologin
user:x:1000:1000:user:/home/user:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
' \
    'root:x:0:
user:x:1000:
nogroup:x:65534:
'
  install -d -m 0755 -o 1000 -g 1000 "$rootfs/home/user"
  [[ -x $rootfs/usr/bin/python3.11 && -L $rootfs/usr/bin/python ]] ||
    die "python rootfs lacks usr/bin/python3.11 or the usr/bin/python link"
  archive python python.json "$rootfs" "Debian bookworm: $(wc -l <"$WORK/python-debs") packages"
}

ensure_host_ca() {
  # shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
  if [[ $(dpkg-query -W -f='${db:Status-Status}' ca-certificates 2>/dev/null) != installed ]]; then
    log "installing the host's ca-certificates (for $HOST_CA_BUNDLE)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >&2
  fi
  [[ -s $HOST_CA_BUNDLE ]] || update-ca-certificates >&2
  [[ -s $HOST_CA_BUNDLE ]] || die "$HOST_CA_BUNDLE is missing after installing ca-certificates"
}

inputs_operator() {
  [[ -f $BINARY ]] || die "operator binary $BINARY does not exist; build it with \`cargo build --release --locked --bin carbonshift\` (or point CARBONSHIFT_OPERATOR_BINARY at one)"
  ensure_host_ca
  deb_list operator >"$WORK/operator-debs"
  common_inputs operator
  cat "$WORK/operator-debs"
  sha256sum "$HOST_CA_BUNDLE"
  echo "binary $(sha256sum <"$BINARY" | cut -d' ' -f1)"
  echo "VERSION=$VERSION REVISION=$REVISION"
}

build_operator() {
  local base=$WORK/operator-base bin=$WORK/operator-bin
  install -d -m 0755 "$base" "$bin"
  unpack_debs "$base" "$WORK/operator-debs"
  skeleton "$base" \
    'root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
' \
    'root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
'
  install -d -m 0700 -o 65532 -g 65532 "$base/home/nonroot"
  install -d -m 0755 "$base/etc/ssl/certs"
  install -m 0644 "$HOST_CA_BUNDLE" "$base/etc/ssl/certs/ca-certificates.crt"
  # The Dockerfile's COPY of `install -D -m 0755 target/release/carbonshift`: root-owned, 0755.
  install -d -m 0755 "$bin/usr" "$bin/usr/local" "$bin/usr/local/bin"
  install -m 0755 "$BINARY" "$bin/usr/local/bin/carbonshift"
  archive operator operator.json \
    "$base" "distroless/cc-debian12:nonroot from Debian packages" \
    "$bin" "COPY carbonshift /usr/local/bin/carbonshift" \
    -- "VERSION=$VERSION" "REVISION=$REVISION"
}

build_one() {
  local name=$1 out=$IMAGES/$1.tar fp
  # Only root can give the files the owners they must have in the image (0, 1000, 65532).
  ((EUID == 0)) || die "building the $name image needs root: its files are owned by uids 0, 1000 and 65532"
  work_dir
  "inputs_$name" >"$WORK/$name.inputs"
  fp=$(sha256sum <"$WORK/$name.inputs" | cut -d' ' -f1)
  if [[ -f $out && -f $IMAGES/$name.fingerprint && $(<"$IMAGES/$name.fingerprint") == "$fp" ]]; then
    log "$name: up to date (inputs unchanged)"
  else
    local start=$SECONDS
    "build_$name"
    echo "$fp" >"$IMAGES/$name.fingerprint"
    log "$name: built in $((SECONDS - start))s, $(du -h "$out" | cut -f1)"
  fi
  echo "$out"
}

check_names() {
  local name
  for name in "$@"; do
    [[ -n ${REFS[$name]+x} ]] || die "unknown image $name (known: ${NAMES[*]})"
  done
}

cmd_build() {
  (($#)) || set -- "${NAMES[@]}"
  check_names "$@"
  local name
  for name in "$@"; do build_one "$name"; done
}

cmd_import() {
  local address='' snapshotter=() names=()
  while (($#)); do
    case $1 in
      --address) address=${2:?--address needs a socket path}; shift 2 ;;
      --address=*) address=${1#--address=}; shift ;;
      --snapshotter) snapshotter=(--snapshotter "${2:?--snapshotter needs a name}"); shift 2 ;;
      --snapshotter=*) snapshotter=(--snapshotter "${1#--snapshotter=}"); shift ;;
      -*) die "unknown option $1" ;;
      *) names+=("$1"); shift ;;
    esac
  done
  [[ -n $address ]] || die "usage: hack/images.sh import --address UNIX_SOCKET [--snapshotter S] [NAME...]"
  ((${#names[@]})) || names=("${NAMES[@]}")
  check_names "${names[@]}"
  local name
  for name in "${names[@]}"; do
    if [[ ! -f $IMAGES/$name.tar ]]; then
      build_one "$name" >/dev/null
    fi
    log "importing $IMAGES/$name.tar (${REFS[$name]})"
    ctr --address "$address" -n k8s.io images import "${snapshotter[@]}" "$IMAGES/$name.tar" >&2
  done
}

cmd_refs() {
  local name
  for name in "${NAMES[@]}"; do echo "$name=${REFS[$name]}"; done
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

case ${1:-} in
  build) shift; cmd_build "$@" ;;
  import) shift; cmd_import "$@" ;;
  refs) cmd_refs ;;
  *) usage ;;
esac
