#!/usr/bin/env bash
# Put jaxdistil on every worker of the TPU VM, install it into a venv, and
# check that JAX sees the TPU.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# What the package needs to install and train: the rest of the checkout
# (a local venv, prepared data, runs) stays here.
COPIED=(pyproject.toml setup.cfg README.md jaxdistil configs)

usage() {
  cat <<EOF
Usage: $PROG --name NAME --zone ZONE [--repo URL [--ref REF]] [--data gs://...]
           [--python PY]

On every worker: puts the code in ~/jaxdistil, creates ~/jaxdistil-venv,
runs pip install -e '.[tpu]' there, and prints each worker's host name and the
number of TPU devices JAX sees (it fails if JAX finds no TPU). Run it again
after changing the code: it replaces ~/jaxdistil and reuses the venv.

  --repo URL   git clone URL on each worker instead of copying this checkout
               (env TPU_REPO). The default copies ${COPIED[*]}
               from $ROOT with gcloud ... scp, uncommitted changes included.
  --ref REF    branch, tag or commit to check out after cloning (env TPU_REF)
  --data gs://BUCKET/PATH/NAME
               a directory made by jaxdistil.prepare, synced to every worker
               as ~/jaxdistil/data/NAME, so --config.data=data/NAME reads it
               (env TPU_DATA)
  --python PY  the workers' Python for the venv; installed with apt-get if
               missing (env TPU_PYTHON; default python3.11)

$COMMON_USAGE
EOF
}

while (($#)); do
  flag_name "$1"
  setup_flag "$@" || common_flag "$@"
  shift "$SHIFT"
done
require TPU_NAME --name TPU_NAME
require TPU_ZONE --zone TPU_ZONE
[[ -z $REF || -n $REPO ]] || usage_error "--ref needs --repo"
[[ -z $DATA || $DATA == gs://* ]] || usage_error "--data must be gs://BUCKET/PATH"
need_tool gcloud

# Values go into a command line that the worker's shell reads again.
quote "$REPO"; repo=$REPLY
quote "$REF"; ref=$REPLY
quote "$PYTHON"; py=$REPLY

# ---- the code ---------------------------------------------------------------
if [[ -n $REPO ]]; then
  fetch=("rm -rf $REMOTE_SRC" "git clone --quiet $repo $REMOTE_SRC")
  [[ -z $REF ]] || fetch+=("git -C $REMOTE_SRC checkout --quiet $ref")
  on_workers all "$(remote_script "${fetch[@]}")"
else
  for path in "${COPIED[@]}"; do
    [[ -e $ROOT/$path ]] || fail "$ROOT/$path is missing: is this a jaxdistil checkout?"
  done
  # Emptied first: scp copies into a folder that exists, and files deleted
  # here must not survive there.
  on_workers all "$(remote_script "rm -rf $REMOTE_SRC" "mkdir -p $REMOTE_SRC")"
  tpu_vm scp --recurse "${COPIED[@]/#/$ROOT/}" "$TPU_NAME:$REMOTE_SRC" --worker=all
fi

# ---- the data ---------------------------------------------------------------
# Kept beside the checkout, which setup replaces, and linked into it; rsync
# only fetches what changed when setup runs again.
if [[ -n $DATA ]]; then
  name=${DATA%/}
  quote "${name##*/}"; name=$REPLY
  quote "$DATA"; data=$REPLY
  on_workers all "$(remote_script "mkdir -p $REMOTE_DATA/$name" \
    "gsutil -m -q rsync -r $data $REMOTE_DATA/$name" "ln -sfn $REMOTE_DATA $REMOTE_SRC/data")"
fi

# ---- the venv ---------------------------------------------------------------
# Ubuntu ships venv support as its own package, so a first failure installs it
# (quietly: the retry shows any real error). The lock timeout waits out the
# unattended upgrades that run on a fresh VM's first boot.
apt="sudo DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600"
install=(
  "cd $REMOTE_SRC"
  "$py -m venv $REMOTE_VENV 2>/dev/null || { $apt update && $apt install -y $py $py-venv && $py -m venv --clear $REMOTE_VENV; }"
  "$REMOTE_VENV/bin/pip install -q -U pip"
  "$REMOTE_VENV/bin/pip install -q -e \".[tpu]\""
  # JAX_PLATFORMS=tpu: an error, rather than a quiet fall back to the CPU.
  "JAX_PLATFORMS=tpu $REMOTE_VENV/bin/python -c \"import jax, socket; print(socket.gethostname(), jax.device_count())\""
)
on_workers all "$(remote_script "${install[@]}")"
