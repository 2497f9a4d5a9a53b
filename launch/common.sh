# shellcheck shell=bash
# Shared by the launch scripts (sourced, never run): defaults, flag parsing,
# and `run`, which prints a command under --dry-run and runs it otherwise.
#
# Written for bash 3.2 too (macOS's /bin/bash): no mapfile, no ${x,,}, and
# possibly empty arrays are expanded as ${a[@]+"${a[@]}"}, which `set -u`
# accepts there.

# Its variables are used by the scripts that source it:
# shellcheck disable=SC2034

PROG=${0##*/}
LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${LAUNCH_DIR%/*}

# Flags fall back to these variables, so a shell can export them once.
TPU_NAME=${TPU_NAME:-}
TPU_ZONE=${TPU_ZONE:-}
TPU_PROJECT=${TPU_PROJECT:-}
ACCELERATOR_TYPE=${TPU_ACCELERATOR_TYPE:-v4-8}
VERSION=${TPU_VERSION:-tpu-ubuntu2204-base}
REPO=${TPU_REPO:-}
REF=${TPU_REF:-}
DATA=${TPU_DATA:-}
# Recent jax needs Python 3.11 or newer; Ubuntu 22.04 (the v4 image) has 3.10.
PYTHON=${TPU_PYTHON:-python3.11}
WORKDIR=${TPU_WORKDIR:-}
CONFIG=''
DRY_RUN=0

# Where things live on each worker, under the ssh user's home. The `~` and
# `$(hostname)` are left for the worker's shell to expand, so that each worker
# names its own log.
REMOTE_SRC=\~/jaxdistil
REMOTE_VENV=\~/jaxdistil-venv
REMOTE_LOGS=\~/jaxdistil-logs
REMOTE_DATA=\~/jaxdistil-data
REMOTE_LOG="$REMOTE_LOGS/train-\$(hostname).log"
REMOTE_PID="$REMOTE_LOGS/train.pid"

COMMON_USAGE="Common flags:
  --name NAME        TPU VM name (env TPU_NAME; required)
  --zone ZONE        zone, e.g. us-central2-b (env TPU_ZONE; required)
  --project PROJECT  Google Cloud project (env TPU_PROJECT; default: gcloud's)
  --dry-run          print the commands, one per line, and run nothing
  --help             this text
Flags take --flag=value or --flag value; '-' and '_' in names are the same."

# ---- errors -----------------------------------------------------------------

usage_error() {   # a bad command line: one line, exit 2
  printf '%s: %s (see --help)\n' "$PROG" "$*" >&2
  exit 2
}

warn() {
  printf '%s: warning: %s\n' "$PROG" "$*" >&2
}

fail() {          # anything else that stops us: one line, exit 1
  printf '%s: %s\n' "$PROG" "$*" >&2
  exit 1
}

# ---- flags ------------------------------------------------------------------
# Each script loops over its arguments: `flag_name "$1"` sets FLAG to the
# normalized name, its own `case "$FLAG"` handles what it knows and hands the
# rest to `common_flag "$@"`. Every branch sets SHIFT.

flag_name() {
  FLAG=${1%%=*}
  FLAG=${FLAG//_/-}
}

take_value() {    # VALUE from "--flag=value" or "--flag value"
  if [[ $1 == *=* ]]; then
    VALUE=${1#*=}
    SHIFT=1
  elif (($# > 1)) && [[ $2 != -* ]]; then
    VALUE=$2
    SHIFT=2
  else
    usage_error "$FLAG needs a value"
  fi
  [[ -n $VALUE ]] || usage_error "$FLAG needs a value"
}

no_value() {
  [[ $1 != *=* ]] || usage_error "$FLAG takes no value"
  SHIFT=1
}

common_flag() {
  case "$FLAG" in
    --name) take_value "$@"; TPU_NAME=$VALUE ;;
    --zone) take_value "$@"; TPU_ZONE=$VALUE ;;
    --project) take_value "$@"; TPU_PROJECT=$VALUE ;;
    --dry-run) no_value "$@"; DRY_RUN=1 ;;
    --help|-h) usage; exit 0 ;;
    -*) usage_error "unknown flag $1" ;;
    *) usage_error "unexpected argument '$1'" ;;
  esac
}

# The flags of create.sh, setup.sh and run.sh, which babysit.sh takes as well.
# Each returns 1 for a flag that is not its own.

create_flag() {
  case "$FLAG" in
    --accelerator-type) take_value "$@"; ACCELERATOR_TYPE=$VALUE ;;
    --version) take_value "$@"; VERSION=$VALUE ;;
    *) return 1 ;;
  esac
}

setup_flag() {
  case "$FLAG" in
    --repo) take_value "$@"; REPO=$VALUE ;;
    --ref) take_value "$@"; REF=$VALUE ;;
    --python) take_value "$@"; PYTHON=$VALUE ;;
    --data) take_value "$@"; DATA=$VALUE ;;
    *) return 1 ;;
  esac
}

run_flag() {
  case "$FLAG" in
    --config) take_value "$@"; CONFIG=$VALUE ;;
    --workdir) take_value "$@"; WORKDIR=$VALUE ;;
    *) return 1 ;;
  esac
}

require() {       # require VAR --flag [ENV]: the flag (or ENV) must be set
  [[ -n ${!1} ]] || usage_error "missing $2${3:+ (or set $3)}"
}

need_tool() {     # only a real run needs the Cloud SDK
  ((DRY_RUN)) || command -v "$1" >/dev/null 2>&1 || fail "$1 not found on PATH:" \
    "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)," \
    "or look at the commands with --dry-run"
}

# ---- printing and running ---------------------------------------------------

quote() {         # REPLY = $1 as one bash word, quoted only where needed
  local plain='^[A-Za-z0-9_@%+=:,./-]+$' flag=''
  local word=$1
  if [[ $word =~ ^--[A-Za-z0-9._-]+= ]]; then   # --flag='a b' reads better
    flag=${BASH_REMATCH[0]}
    word=${word#"$flag"}
  fi
  if [[ $word =~ $plain ]]; then
    REPLY=$flag$word
  elif [[ $word == *[[:cntrl:]]* ]]; then
    printf -v REPLY '%s%q' "$flag" "$word"    # $'...' keeps a newline on one line
  else
    REPLY="$flag'${word//\'/\'\\\'\'}'"
  fi
}

command_line() {  # the arguments as one line a user can paste into a shell
  local line='' word
  for word in "$@"; do
    quote "$word"
    line+="$REPLY "
  done
  printf '%s\n' "${line% }"
}

run() {
  if ((DRY_RUN)); then
    command_line "$@"
  else
    { printf '+ '; command_line "$@"; } >&2
    "$@"
  fi
}

# ---- gcloud -----------------------------------------------------------------

tpu_vm() {        # tpu_vm SUBCOMMAND ARGS...: adds the zone and project
  local sub=$1
  shift
  run gcloud compute tpus tpu-vm "$sub" "$@" --zone="$TPU_ZONE" \
    ${TPU_PROJECT:+"--project=$TPU_PROJECT"}
}

on_workers() {    # on_workers WORKER COMMAND: a shell command on one or all
  tpu_vm ssh "$TPU_NAME" --worker="$1" --command="$2"
}

remote_script() { # the steps as one line for --command; the first failure stops it
  local out='set -e' step
  for step in "$@"; do
    if [[ $out == *'&' ]]; then out+=" $step"; else out+="; $step"; fi   # "&;" is an error
  done
  printf '%s' "$out"
}
