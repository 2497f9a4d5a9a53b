#!/usr/bin/env bash
# Delete the TPU VM: billing stops, and everything on its disks is gone.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
Usage: $PROG --name NAME --zone ZONE

Deletes the TPU VM without asking. Checkpoints and metrics in a gs:// workdir
stay; the workers' disks, the code and the logs in ~/jaxdistil-logs do not.

$COMMON_USAGE
EOF
}

while (($#)); do
  flag_name "$1"
  common_flag "$@"
  shift "$SHIFT"
done
require TPU_NAME --name TPU_NAME
require TPU_ZONE --zone TPU_ZONE
need_tool gcloud

# --quiet: no prompt, so that babysit.sh can call it unattended.
tpu_vm delete "$TPU_NAME" --quiet
