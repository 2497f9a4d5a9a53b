"""Conversion between our params and Hugging Face checkpoints (no torch needed).

    python -m jaxdistil.convert import --hf=DIR_OR_ID --output=MODEL_DIR
    python -m jaxdistil.convert export --checkpoint=WORKDIR_OR_MODEL_DIR --output=HF_DIR

`names` holds the tensor-name tables and `hf_config` the config-key tables,
`hf_files` reads HF directories, `hf_in` imports, `hf_out` exports, and
`model_dir` is our own model directory plus `load_model`, the one loader used
by `train` (teachers) and `glue` (any model); every loader returns a `Loaded`.
"""

from jaxdistil.convert.hf_files import ConvertError
from jaxdistil.convert.hf_in import import_hf
from jaxdistil.convert.hf_out import export, export_student
from jaxdistil.convert.loaded import Loaded
from jaxdistil.convert.model_dir import load_model, load_with_tokenizer, save_model

__all__ = ['ConvertError', 'import_hf', 'export', 'export_student', 'Loaded',
           'load_model', 'load_with_tokenizer', 'save_model']
