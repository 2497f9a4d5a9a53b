"""Installs like a release: a wheel, installed into a fresh venv, runs the quick
start and the shipped configs from a directory that is not the checkout."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _can_build_without_isolation() -> bool:
  try:
    import setuptools
    major, minor = (int(x) for x in setuptools.__version__.split('.')[:2])
  except Exception:
    return False
  return (major, minor) >= (70, 1)      # bdist_wheel without the wheel package


@pytest.fixture(scope='module')
def venv(tmp_path_factory):
  """A venv over this interpreter's packages (jax, tf, ...: nothing to
  download) with the jaxdistil wheel installed into it, shadowing any editable
  install of the checkout."""
  root = tmp_path_factory.mktemp('install')
  # Built from a copy: an in-tree build leaves build/ in the checkout.
  source = root / 'source'
  shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
      '.git', '.venv', 'build', 'dist', '*.egg-info', '__pycache__', 'results',
      'workdir*', '.pytest_cache'))
  dist = root / 'dist'
  cmd = [sys.executable, '-m', 'pip', 'wheel', str(source), '--no-deps', '-q',
         '-w', str(dist)]
  if _can_build_without_isolation():
    cmd.append('--no-build-isolation')
  r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  wheels = glob.glob(str(dist / 'jaxdistil-*.whl'))
  assert len(wheels) == 1, wheels
  env_dir = root / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages',
                  str(env_dir)], check=True, timeout=300)
  python = str(env_dir / 'bin' / 'python')
  r = subprocess.run([python, '-m', 'pip', 'install', '-q', '--no-deps',
                      '--no-index', wheels[0]], capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  elsewhere = root / 'elsewhere'
  elsewhere.mkdir()
  return python, str(elsewhere), str(env_dir)


def run(python, cwd, *args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='', PYTHONPATH='')
  return subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)


def test_the_wheel_is_what_runs_and_carries_configs_and_data(venv):
  python, cwd, env_dir = venv
  r = run(python, cwd, '-c',
          'import jaxdistil, jaxdistil.configs as c, os; '
          'print(jaxdistil.__file__); print(sorted(os.listdir(c.__path__[0])))')
  assert r.returncode == 0, r.stderr
  where, listing = r.stdout.strip().splitlines()
  assert where.startswith(env_dir), where         # not the checkout's
  for name in ('tiny.py', 'small.py', 'distilbert_base.py', 'quickstart.py',
               'ablate.py', 'replicate.py'):
    assert name in listing


def test_train_with_a_shipped_config_from_any_directory(venv):
  python, cwd, _ = venv
  for given in ('configs/tiny.py', 'tiny.py'):
    work = os.path.join(cwd, f'w_{given.replace("/", "_")}')
    r = run(python, cwd, '-m', 'jaxdistil.train', f'--config={given}',
            f'--workdir={work}', '--config.total_steps=2', '--config.eval_every=0',
            '--config.checkpoint_every=2', '--config.data=synthetic')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'step 2' in r.stdout
  # A name that is neither a file nor shipped is still one line.
  r = run(python, cwd, '-m', 'jaxdistil.train', '--config=configs/nope.py',
          f'--workdir={cwd}/w_nope')
  assert r.returncode == 2 and r.stderr.strip().count('\n') == 0, r.stderr
  assert "'configs/nope.py' does not exist" in r.stderr


def test_quickstart_from_the_wheel(venv):
  python, cwd, _ = venv
  r = run(python, cwd, '-m', 'jaxdistil.quickstart', '--workdir=qs',
          '--student_steps=2', timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  assert os.path.isfile(os.path.join(cwd, 'qs', 'data', 'metadata.json'))
  assert os.path.isfile(os.path.join(cwd, 'qs', 'student', 'DONE'))
  assert os.path.isfile(os.path.join(cwd, 'qs', 'student', 'hf', 'config.json'))
