#!/usr/bin/env bash
# Create a Cloud TPU VM (one host, or every host of a pod slice).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SPOT=''

usage() {
  cat <<EOF
Usage: $PROG --name NAME --zone ZONE [--accelerator_type TYPE] [--version V] [--spot]

Creates the TPU VM with gcloud compute tpus tpu-vm create.

  --accelerator_type TYPE  e.g. v4-8 (one host) or v4-32 (four hosts)
                           (env TPU_ACCELERATOR_TYPE; default v4-8)
  --version V              TPU software version (env TPU_VERSION;
                           default tpu-ubuntu2204-base, the one for v4)
  --spot                   a spot TPU: much cheaper, but it can be preempted
                           at any time (see babysit.sh)

$COMMON_USAGE
EOF
}

while (($#)); do
  flag_name "$1"
  case "$FLAG" in
    --spot) no_value "$@"; SPOT=1 ;;
    *) create_flag "$@" || common_flag "$@" ;;
  esac
  shift "$SHIFT"
done
require TPU_NAME --name TPU_NAME
require TPU_ZONE --zone TPU_ZONE
need_tool gcloud

tpu_vm create "$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE" \
  --version="$VERSION" ${SPOT:+--spot}
