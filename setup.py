"""The one thing setup.cfg cannot say: the top-level `configs/` folder is
installed as the package `jaxdistil.configs` (so a wheel carries the configs)."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=['jaxdistil', 'jaxdistil.*'])
      + ['jaxdistil.configs'],
      package_dir={'jaxdistil.configs': 'configs'})
