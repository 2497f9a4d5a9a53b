"""`python -m jaxdistil.prepare`: tokenise a corpus into training shards.

    python -m jaxdistil.prepare --source='../shared/data/corpus/wikipedia/wiki_*' \
        --tokenizer=../shared/data/vocab --max_len=128 --output=data/wiki128

See `jaxdistil.data.corpus` for the output layout. Rerunning on a finished
directory does nothing; an interrupted run resumes where its last shard ended.
"""

from __future__ import annotations

import sys
import time

from absl import flags

from jaxdistil import cli
from jaxdistil.data import corpus as corpus_lib
from jaxdistil.data import tokenizer as tokenizer_lib


def define_flags(fv) -> None:
  d = dict(flag_values=fv)
  flags.DEFINE_list('source', None, 'glob(s) of input text files and/or '
                    'tfds:NAME[:SPLIT[:FEATURE]] datasets', **d)
  flags.DEFINE_string('tfds_data_dir', None, 'where the TFDS sources are built',
                      **d)
  flags.DEFINE_enum('format', 'auto', ['auto', 'text', 'wikiextractor',
                                       'gutenberg'],
                    'input format (auto: detected per file)', **d)
  flags.DEFINE_string('tokenizer', None, 'HF tokenizer directory, vocab.txt '
                      'folder or hub id', **d)
  flags.DEFINE_integer('max_len', 128, 'tokens per sequence, with [CLS] and '
                       '[SEP] (<s> and </s> for RoBERTa)', **d)
  flags.DEFINE_string('output', None, 'directory for shards + metadata', **d)
  flags.DEFINE_integer('shard_size', 20000, 'sequences per shard', **d)
  flags.DEFINE_integer('max_positions', 512, "the teacher's position "
                       'embeddings', **d)
  flags.DEFINE_integer('teacher_vocab_size', 0, "if set, the tokenizer must "
                       "have exactly this many tokens (the teacher's)", **d)


def main(argv=None) -> int:
  start = time.perf_counter()
  try:
    args = cli.parse('python -m jaxdistil.prepare', __doc__, define_flags, argv)
    cli.require(args, 'source', 'tokenizer', 'output')
    meta = corpus_lib.prepare(args.source, args.tokenizer, args.max_len,
                              args.output, fmt=args.format,
                              shard_size=args.shard_size,
                              max_positions=args.max_positions,
                              tfds_data_dir=args.tfds_data_dir,
                              teacher_vocab_size=args.teacher_vocab_size or None)
  except (cli.UsageError, corpus_lib.PrepareError, tokenizer_lib.TokenizerError,
          ValueError, OSError) as e:
    print(f'jaxdistil.prepare: {e}', file=sys.stderr)
    return 2
  print(f'{args.output}: {meta["num_sequences"]} sequences, '
        f'{meta["num_tokens"]} tokens in {len(meta["shards"])} shard(s) from '
        f'{meta["num_documents"]} documents ({time.perf_counter() - start:.1f} s)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
