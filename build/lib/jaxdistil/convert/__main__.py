"""`python -m jaxdistil.convert import|export`: see `jaxdistil.convert`."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m jaxdistil.convert',
      description='Convert between Hugging Face checkpoints and jaxdistil models.')
  sub = p.add_subparsers(dest='command', required=True)
  imp = sub.add_parser('import', help='HF BERT/DistilBERT -> jaxdistil model dir')
  imp.add_argument('--hf', required=True, help='HF model directory or hub id')
  imp.add_argument('--output', required=True, help='new jaxdistil model directory')
  imp.add_argument('--init_missing_head', action='store_true',
                   help='for a bare encoder (BertModel): initialise an MLM head')
  exp = sub.add_parser('export', help='jaxdistil model or train workdir -> HF dir')
  exp.add_argument('--checkpoint', required=True,
                   help='a train workdir (its latest checkpoint), a jaxdistil model '
                        'directory, or an HF directory')
  exp.add_argument('--output', required=True, help='new HF directory')
  exp.add_argument('--layout', choices=('distilbert', 'bert'), default=None,
                   help='default: distilbert for models without token types '
                        '(students), bert otherwise')
  exp.add_argument('--tokenizer', default=None,
                   help='tokenizer folder to copy (default: the checkpoint\'s own)')
  return p


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  from jaxdistil.convert import export, load_model, save_model
  from jaxdistil.convert.hf_files import ConvertError
  from jaxdistil.convert.hf_in import import_hf
  try:
    if args.command == 'import':
      import os
      from jaxdistil import fs
      # before reading anything
      fs.refuse_nonempty(os.path.abspath(args.output), error=ConvertError)
      m = import_hf(args.hf, init_missing_head=args.init_missing_head)
      tok = m.tokenizer_dir
      save_model(args.output, m.config, m.params, m.layout, source=args.hf,
                 tokenizer_dir=tok, pooler=m.pooler, fresh_head=m.fresh_head)
      c = m.config
      print(f'jaxdistil.convert: {args.hf} ({m.layout}, {c.num_layers} layers, '
            f'hidden {c.hidden_size}, vocab {c.vocab_size}) -> {args.output}'
            + ('' if tok else ' (no tokenizer files found: pass one to train)'))
    else:
      m = load_model(args.checkpoint)
      tok = args.tokenizer or m.tokenizer_dir
      layout = export(m.config, m.params, args.output, args.layout, tok)
      print(f'jaxdistil.convert: {m.source or args.checkpoint} -> {args.output} '
            f'({"DistilBertForMaskedLM" if layout == "distilbert" else "BertForMaskedLM"})'
            + ('' if tok else '; no tokenizer files were available to copy'))
  except (ConvertError, ValueError, OSError) as e:
    print(f'jaxdistil.convert: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
