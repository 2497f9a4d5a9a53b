"""GLUE fine-tuning and evaluation (Table 1 of Sanh et al., 2019).

    python -m jaxdistil.glue --model=DIR --task=all --data_dir=glue_data

Modules: `tasks` (the nine tasks), `data` (TSV / TFDS reading, tokenisation),
`metrics` (GLUE metrics, macro score), `finetune` (`run_task`), `report`
(Table 1 and Table 4 in markdown), `run` (one model on its tasks: the library
behind the command), `__main__` (the command line). Nothing heavy
is imported here.
"""

from jaxdistil.glue.tasks import GlueError, TASKS, TABLE1_ORDER, get  # noqa: F401
