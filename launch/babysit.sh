#!/usr/bin/env bash
# Keep a training run on a spot TPU going: when the TPU is preempted (or gone),
# delete it, create it again, set it up and start the same run, which resumes
# from its last checkpoint. Stops when the run has written its done marker.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

INTERVAL=300
MAX_RESTARTS=10
DONE_MARKER=DONE
TRAIN_ARGS=()

usage() {
  cat <<EOF
Usage: $PROG --name NAME --zone ZONE --config FILE --workdir gs://BUCKET/PATH
           [create.sh, setup.sh flags] [--interval S] [--max_restarts N]
           [--done_marker FILE] [-- TRAIN_FLAGS...]

Every S seconds: stop if WORKDIR/FILE exists (the train command writes it when
the run is complete); otherwise read the TPU's state, and if it is PREEMPTED,
TERMINATED or missing, delete it, create it again as a spot TPU, and run
setup.sh and run.sh. A TPU that is missing when this starts is created, so this
alone can also start a run. Ctrl-C stops watching and leaves the TPU and its
training running.

  --interval S        seconds between checks (default 300)
  --max_restarts N    give up after creating the TPU N times (default 10)
  --done_marker FILE  the file in the workdir that ends the run (default DONE)
  --accelerator_type, --version       as for create.sh (always with --spot)
  --repo, --ref, --data, --python     as for setup.sh
  --config, --workdir, -- FLAGS...    as for run.sh; the workdir must be on
                                      gs://, since a preempted TPU's disks go

$COMMON_USAGE
EOF
}

while (($#)); do
  flag_name "$1"
  case "$FLAG" in
    --interval) take_value "$@"; INTERVAL=$VALUE ;;
    --max-restarts) take_value "$@"; MAX_RESTARTS=$VALUE ;;
    --done-marker) take_value "$@"; DONE_MARKER=$VALUE ;;
    --) shift; TRAIN_ARGS=("$@"); break ;;
    *) create_flag "$@" || setup_flag "$@" || run_flag "$@" || common_flag "$@" ;;
  esac
  shift "$SHIFT"
done
require TPU_NAME --name TPU_NAME
require TPU_ZONE --zone TPU_ZONE
require CONFIG --config
require WORKDIR --workdir TPU_WORKDIR
[[ $WORKDIR == gs://* ]] || usage_error "--workdir must be gs://BUCKET/PATH: a preempted TPU's own disks are lost with it"
[[ $INTERVAL =~ ^[1-9][0-9]*$ ]] || usage_error "--interval must be a positive number of seconds"
[[ $MAX_RESTARTS =~ ^[0-9]+$ ]] || usage_error "--max_restarts must be a number"
[[ -z $REF || -n $REPO ]] || usage_error "--ref needs --repo"
[[ -z $DATA || $DATA == gs://* ]] || usage_error "--data must be gs://BUCKET/PATH"
need_tool gcloud
need_tool gsutil

MARKER="${WORKDIR%/}/$DONE_MARKER"

# ---- the other scripts, with the same settings ------------------------------

tpu=(--name="$TPU_NAME" --zone="$TPU_ZONE" ${TPU_PROJECT:+"--project=$TPU_PROJECT"})
if ((DRY_RUN)); then tpu+=(--dry-run); fi
setup_args=(--python="$PYTHON" ${REPO:+"--repo=$REPO"} ${REF:+"--ref=$REF"}
  ${DATA:+"--data=$DATA"})

script() {        # script NAME.sh ARGS...: $BASH, as the executable bit may be lost
  "$BASH" "$LAUNCH_DIR/$1" "${tpu[@]}" "${@:2}"
}

recreate() {
  { [[ -z $STATE ]] || script delete.sh; } &&
    script create.sh --accelerator-type="$ACCELERATOR_TYPE" --version="$VERSION" --spot
}

start() {
  script setup.sh "${setup_args[@]}" &&
    script run.sh --config="$CONFIG" --workdir="$WORKDIR" -- ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"}
}

# ---- checks -----------------------------------------------------------------

log() {
  printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PROG" "$*" >&2
}

finished() {      # a dry run shows the check and goes on
  run gsutil -q stat "$MARKER" && ((!DRY_RUN))
}

read_state() {    # STATE, '' when the TPU does not exist; fails when unknown
  if ((DRY_RUN)); then
    tpu_vm describe "$TPU_NAME" --format='value(state)'
    STATE=PREEMPTED    # the case a dry run shows
    return 0
  fi
  local errors
  errors=$(mktemp)
  if STATE=$(tpu_vm describe "$TPU_NAME" --format='value(state)' 2>"$errors"); then
    rm -f "$errors"
    return 0
  fi
  # Only "not found" means missing: any other error (the network, an expired
  # login) must not get a healthy TPU deleted.
  STATE=''
  if grep -q NOT_FOUND "$errors"; then
    rm -f "$errors"
    return 0
  fi
  cat "$errors" >&2
  rm -f "$errors"
  return 1
}

trap 'echo >&2; log "stopped watching: $TPU_NAME and its training are left as they are"; exit 130' INT

# ---- the loop ---------------------------------------------------------------
restarts=0
need_start=0      # set from a re-creation until setup.sh and run.sh succeed
seen=unknown
while :; do
  if finished; then
    log "$MARKER exists: the run is complete"
    exit 0
  fi
  if ! read_state; then
    log "cannot read the state of $TPU_NAME; trying again in ${INTERVAL}s"
  else
    [[ $STATE == "$seen" ]] || log "$TPU_NAME is ${STATE:-missing}"
    seen=$STATE
    case $STATE in
      PREEMPTED|TERMINATED|'')
        ((restarts < MAX_RESTARTS)) ||
          fail "$TPU_NAME is ${STATE:-missing} and all --max_restarts=$MAX_RESTARTS creations are used"
        restarts=$((restarts + 1))
        log "creating $TPU_NAME as a spot TPU (creation $restarts of $MAX_RESTARTS)"
        need_start=1
        if recreate; then STATE=READY; else log "could not create it; trying again in ${INTERVAL}s"; fi
        ;;
    esac
    if ((need_start)) && [[ $STATE == READY ]]; then
      if start; then
        need_start=0
        log "training started on $TPU_NAME"
      else
        log "setup or start failed; trying again in ${INTERVAL}s"
      fi
    fi
  fi
  if ((DRY_RUN)); then exit 0; fi
  sleep "$INTERVAL"
done
