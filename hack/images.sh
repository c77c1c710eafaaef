#!/usr/bin/env bash
# The project's images, built with no image pulls: `base` is a Debian rootfs from debootstrap, imported
# into Docker and cached as a tarball; `operator`, `pipeline`, `trainer` and `vllm` are `docker build`s on it
# (images/*/Dockerfile, base given as the BASE build argument); `load` copies them into the local node's
# containerd, where the kubelet finds them (imagePullPolicy IfNotPresent, nothing is pulled).
#   hack/images.sh base | build [IMAGE...] | load [IMAGE...] | all
LOG_PREFIX=images
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/engine.sh"

IMAGES_DIR="$CACHE_ROOT/images"
# What goes into the base rootfs; the base's tag is a hash of this list, the mirror and uv's version.
BASE_PACKAGES=python3,ca-certificates
DEBIAN_MIRROR=${REASONING_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_KEY=$(printf '%s\n' "$BASE_PACKAGES" "$DEBIAN_MIRROR" "$UV_VERSION" "$(sed -n '/^make_rootfs()/,/^}/p' "$0")" | sha256sum | cut -c1-12)
BASE_IMAGE=reasoning-operator/base:bookworm-$BASE_KEY
ALL_IMAGES=(operator pipeline trainer vllm)

image_ref() { printf "ghcr.io/reasoning-operator/%s:%s" "$1" "$IMAGE_TAG"; }

make_rootfs() { # DIR: a minimal bookworm with Python, CA certificates, uv and an unprivileged user
  local dir=$1
  debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$dir" "$DEBIAN_MIRROR" >&2
  install -m 0755 "$(readlink -f "$(bin_uv)")" "$dir/usr/local/bin/uv"
  # trust what this machine trusts: a TLS-inspecting proxy in front of PyPI has its CA only here
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  # uid 1000 is the user every stage container runs as (the operator's pods set runAsUser 1000)
  chroot "$dir" useradd --uid 1000 --create-home --shell /usr/sbin/nologin reasoning
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
}

build_base() {
  if docker_ image inspect "$BASE_IMAGE" >/dev/null 2>&1; then log "base: $BASE_IMAGE present"; return; fi
  local tarball="$IMAGES_DIR/base-$BASE_KEY.tar"
  if [[ ! -f $tarball ]]; then
    require_command debootstrap "Install it with 'apt-get install debootstrap' (make setup does)."
    log "base: debootstrap bookworm into a rootfs (about a minute, once)"
    local rootfs="$IMAGES_DIR/rootfs-$BASE_KEY.partial"
    rm -rf "$rootfs" && mkdir -p "$rootfs"
    make_rootfs "$rootfs"
    tar -C "$rootfs" --numeric-owner -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball" && rm -rf "$rootfs"
  fi
  log "base: docker import $tarball"
  docker_ import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
}

build_image() { # NAME
  local name=$1 started=$SECONDS
  build_base
  log "$name: docker build -f images/$name/Dockerfile -> $(image_ref "$name")"
  DOCKER_BUILDKIT=0 docker_ build --quiet --build-arg "BASE=$BASE_IMAGE" --build-arg "UV_IMAGE=$BASE_IMAGE" \
    -f "$REPO_ROOT/images/$name/Dockerfile" -t "$(image_ref "$name")" "$REPO_ROOT" >/dev/null
  log "$name: built in $((SECONDS - started)) s ($(docker_ image inspect -f '{{.Size}}' "$(image_ref "$name")" | numfmt --to=iec))"
}

load_image() { # NAME: onto the node, unless that exact image (by Docker image ID) is there already
  local name=$1 ref id stamp
  ref=$(image_ref "$name")
  id=$(docker_ image inspect -f '{{.Id}}' "$ref")
  stamp="$CONTAINERD_ROOT/loaded/${name}"
  if [[ -f $stamp && $(cat "$stamp") == "$id" && $(ctr_ images check "name==$ref" 2>/dev/null) == *complete* ]]; then
    log "$name: $ref already on the node"; return
  fi
  local started=$SECONDS
  # a docker save stream, every time: containerd skips the layers it already has (by digest). Through a
  # local registry each image was on the disk once more (its gzip copy, 6 GB per dependency layer before
  # compression, minutes of both cores to make), and disk is what this machine is short of.
  docker_ save "$ref" | ctr_ images import - >/dev/null
  mkdir -p "$(dirname "$stamp")" && printf '%s' "$id" >"$stamp"
  log "$name: $ref on the node in $((SECONDS - started)) s"
}

prune() { # the previous builds of a tag (dangling now): gigabytes each, and nothing refers to them
  docker_ image prune --force >/dev/null
}

main() {
  local command=${1:-all}
  shift || true
  local names=("$@")
  [[ ${#names[@]} == 0 ]] && names=("${ALL_IMAGES[@]}")
  engine_up
  case $command in
    base) build_base ;;
    build) for n in "${names[@]}"; do build_image "$n"; done; prune ;;
    load) for n in "${names[@]}"; do load_image "$n"; done ;;
    all) for n in "${names[@]}"; do build_image "$n"; done; prune; for n in "${names[@]}"; do load_image "$n"; done ;;
    *) die "usage: hack/images.sh base | build [IMAGE...] | load [IMAGE...] | all" ;;
  esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
