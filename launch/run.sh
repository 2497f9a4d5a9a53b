#!/usr/bin/env bash
# Start `python -m jaxdistil.train` on every worker, in the background.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TRAIN_ARGS=()

usage() {
  cat <<EOF
Usage: $PROG --name NAME --zone ZONE --config FILE --workdir DIR [-- TRAIN_FLAGS...]

Starts python -m jaxdistil.train on every worker at once under nohup, and
returns. Each worker writes ~/jaxdistil-logs/train-HOSTNAME.log (see logs.sh).
Training resumes from the latest checkpoint in the workdir, so running this
again after a stop or a preemption continues the run.

  --config FILE   config file, relative to the checkout, e.g.
                  configs/distilbert_base.py (required)
  --workdir DIR   checkpoints and metrics; use gs://BUCKET/PATH, which every
                  worker shares and which outlives the VM (env TPU_WORKDIR;
                  required)
  -- FLAGS...     passed on to jaxdistil.train, e.g. -- --config.total_steps=1000

$COMMON_USAGE
EOF
}

while (($#)); do
  flag_name "$1"
  case "$FLAG" in
    --) shift; TRAIN_ARGS=("$@"); break ;;
    *) run_flag "$@" || common_flag "$@" ;;
  esac
  shift "$SHIFT"
done
require TPU_NAME --name TPU_NAME
require TPU_ZONE --zone TPU_ZONE
require CONFIG --config
require WORKDIR --workdir TPU_WORKDIR
need_tool gcloud

[[ $WORKDIR == gs://* ]] || warn "--workdir $WORKDIR is on each worker's own disk:" \
  "not shared between the workers, and lost with the VM (gs://BUCKET/PATH is neither)"

# The train command line, quoted for the worker's shell.
train="JAX_PLATFORMS=tpu PYTHONUNBUFFERED=1 nohup $REMOTE_VENV/bin/python -m jaxdistil.train"
for arg in "--config=$CONFIG" "--workdir=$WORKDIR" ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"}; do
  quote "$arg"
  train+=" $REPLY"
done

# A second copy would find the TPU busy and die, so a worker that still runs
# one says so and the whole command fails. Standard streams all go to the log
# so that ssh returns at once; JAX_PLATFORMS=tpu fails rather than falls back
# to the CPU.
steps=(
  "mkdir -p $REMOTE_LOGS"
  "cd $REMOTE_SRC"
  "if [ -e $REMOTE_PID ] && kill -0 \"\$(cat $REMOTE_PID)\" 2>/dev/null; then echo \"\$(hostname): jaxdistil.train is already running (pid \$(cat $REMOTE_PID))\" >&2; exit 1; fi"
  "$train >> $REMOTE_LOG 2>&1 < /dev/null &"
  "echo \$! > $REMOTE_PID"
  "echo \"\$(hostname): started jaxdistil.train (pid \$!), log $REMOTE_LOG\""
)
on_workers all "$(remote_script "${steps[@]}")"
((DRY_RUN)) || printf '%s: follow it with: %s/logs.sh --name %s --zone %s%s\n' \
  "$PROG" "$LAUNCH_DIR" "$TPU_NAME" "$TPU_ZONE" "${TPU_PROJECT:+ --project $TPU_PROJECT}" >&2
