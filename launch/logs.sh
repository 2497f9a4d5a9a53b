#!/usr/bin/env bash
# Follow one worker's training log, or show the end of every worker's.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORKER=''
ALL=0
LINES=50

usage() {
  cat <<EOF
Usage: $PROG --name NAME --zone ZONE [--worker N | --all] [--lines N]

Without --all, follows worker N's log (tail -F; Ctrl-C stops following, not
training). With --all, prints the last lines of every worker's log, each line
led by its worker's host name.

  --worker N   which worker to follow (default 0, the one that writes metrics)
  --all        the end of every worker's log, once
  --lines N    how many lines to show (default 50)

$COMMON_USAGE
EOF
}

while (($#)); do
  flag_name "$1"
  case "$FLAG" in
    --worker) take_value "$@"; WORKER=$VALUE ;;
    --all) no_value "$@"; ALL=1 ;;
    --lines) take_value "$@"; LINES=$VALUE ;;
    *) common_flag "$@" ;;
  esac
  shift "$SHIFT"
done
require TPU_NAME --name TPU_NAME
require TPU_ZONE --zone TPU_ZONE
[[ $ALL == 0 || -z $WORKER ]] || usage_error "--worker and --all do not go together"
WORKER=${WORKER:-0}
[[ $WORKER =~ ^[0-9]+$ ]] || usage_error "--worker must be a worker number, not '$WORKER'"
[[ $LINES =~ ^[0-9]+$ ]] || usage_error "--lines must be a number, not '$LINES'"
need_tool gcloud

if ((ALL)); then
  # The progress bar redraws its line with carriage returns: keep what a
  # terminal would show, the text after the last one.
  on_workers all "tail -n $LINES $REMOTE_LOG | sed -e \"s/.*\r//\" -e \"s/^/\$(hostname): /\""
else
  on_workers "$WORKER" "tail -n $LINES -F $REMOTE_LOG"
fi
