"""Conversion between our params and Hugging Face checkpoints (no torch needed).

    python -m jaxdistil.convert import --hf=DIR_OR_ID --output=MODEL_DIR
    python -m jaxdistil.convert export --checkpoint=WORKDIR_OR_MODEL_DIR --output=HF_DIR

`names` holds the name tables, `hf_files` reads HF directories, `hf_in` imports,
`hf_out` exports, and `model_dir` is our own model directory plus `load_model`,
the one loader used by `train` (teachers) and `glue` (any model).
"""

from jaxdistil.convert.hf_files import ConvertError
from jaxdistil.convert.hf_in import Imported, import_hf
from jaxdistil.convert.hf_out import export
from jaxdistil.convert.model_dir import Loaded, load_model, save_model

__all__ = ['ConvertError', 'Imported', 'import_hf', 'export', 'Loaded',
           'load_model', 'save_model']
