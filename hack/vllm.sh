#!/usr/bin/env bash
# vLLM for CPU, pinned apart from the workspace (it pins its own torch and transformers):
#   hack/vllm.sh lock    re-resolve images/vllm/requirements.txt from requirements.in + overrides.txt
#   hack/vllm.sh venv    the host's copy, for the stage tests and `reasoning-pipeline run` (cached by the
#                        lock's hash); prints its python. images/vllm/Dockerfile installs the same lock.
LOG_PREFIX=vllm
source "$(dirname "$0")/lib.sh"

VLLM_DIR="$REPO_ROOT/images/vllm"
export UV_PYTHON_DOWNLOADS=never UV_SYSTEM_CERTS=1

lock() {
  "$(bin_uv)" pip compile --quiet "$VLLM_DIR/requirements.in" --override "$VLLM_DIR/overrides.txt" \
    --python-version "$PYTHON_VERSION" --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command "hack/vllm.sh lock" -o "$VLLM_DIR/requirements.txt"
  log "pinned $(grep -c '==' "$VLLM_DIR/requirements.txt") packages into images/vllm/requirements.txt"
}

venv() {
  local dir
  dir="$(vllm_venv_dir)"
  if [[ -x $dir/bin/python && -f $dir/.complete ]]; then log "cached in $dir"; echo "$dir/bin/python"; return; fi
  log "installing images/vllm/requirements.txt into $dir (a few GB, once per lock)"
  rm -rf "$dir" && "$(bin_uv)" venv --quiet --python "python$PYTHON_VERSION" "$dir" >&2
  "$(bin_uv)" pip sync --quiet --python "$dir/bin/python" "$VLLM_DIR/requirements.txt" >&2
  touch "$dir/.complete"
  echo "$dir/bin/python"
}

case ${1:-} in
  lock) lock ;;
  venv) venv ;;
  *) die "usage: hack/vllm.sh lock | venv" ;;
esac
