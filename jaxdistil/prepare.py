"""`python -m jaxdistil.prepare`: tokenise a corpus into training shards.

    python -m jaxdistil.prepare --source='../shared/data/corpus/wikipedia/wiki_*' \
        --tokenizer=../shared/data/vocab --max_len=128 --output=data/wiki128

See `jaxdistil.data.corpus` for the output layout. Rerunning on a finished
directory does nothing; an interrupted run resumes where its last shard ended.
"""

from __future__ import annotations

import sys
import time

from absl import app, flags

from jaxdistil.data import corpus as corpus_lib
from jaxdistil.data import tokenizer as tokenizer_lib

_SOURCE = flags.DEFINE_list('source', None, 'Glob(s) of input text files and/or '
                            'tfds:NAME[:SPLIT[:FEATURE]] datasets.')
_TFDS_DATA_DIR = flags.DEFINE_string('tfds_data_dir', None,
                                     'Where the TFDS sources are built.')
_FORMAT = flags.DEFINE_enum('format', 'auto',
                            ['auto', 'text', 'wikiextractor', 'gutenberg'],
                            'Input format (auto: detected per file).')
_TOKENIZER = flags.DEFINE_string('tokenizer', None,
                                 'HF tokenizer directory, vocab.txt folder or id.')
_MAX_LEN = flags.DEFINE_integer('max_len', 128, 'Tokens per sequence, with '
                                '[CLS] and [SEP] (<s> and </s> for RoBERTa).')
_OUTPUT = flags.DEFINE_string('output', None, 'Directory for shards + metadata.')
_SHARD_SIZE = flags.DEFINE_integer('shard_size', 20000, 'Sequences per shard.')
_MAX_POSITIONS = flags.DEFINE_integer('max_positions', 512,
                                      "The teacher's position embeddings.")
_TEACHER_VOCAB = flags.DEFINE_integer('teacher_vocab_size', 0,
                                      "If set, the tokenizer must have exactly "
                                      "this many tokens (the teacher's).")


def main(argv):
  del argv
  for flag in (_SOURCE, _TOKENIZER, _OUTPUT):
    if not flag.value:
      raise app.UsageError(f'--{flag.name} is required')
  start = time.perf_counter()
  try:
    meta = corpus_lib.prepare(_SOURCE.value, _TOKENIZER.value, _MAX_LEN.value,
                               _OUTPUT.value, fmt=_FORMAT.value,
                               shard_size=_SHARD_SIZE.value,
                               max_positions=_MAX_POSITIONS.value,
                               tfds_data_dir=_TFDS_DATA_DIR.value,
                               teacher_vocab_size=_TEACHER_VOCAB.value or None)
  except (corpus_lib.PrepareError, tokenizer_lib.TokenizerError, ValueError,
          OSError) as e:
    print(f'jaxdistil.prepare: {e}', file=sys.stderr)
    sys.exit(2)
  print(f'{_OUTPUT.value}: {meta["num_sequences"]} sequences, '
        f'{meta["num_tokens"]} tokens in {len(meta["shards"])} shard(s) from '
        f'{meta["num_documents"]} documents ({time.perf_counter() - start:.1f} s)')


if __name__ == '__main__':
  app.run(main)
