"""The shipped configs. In a checkout they are `configs/*.py`; installed (a
wheel, `pip install .`) they are the package `jaxdistil.configs`, so that
`--config=configs/NAME.py` (or just `NAME.py`) works from any directory: see
`jaxdistil.config_files.resolve_path`."""
