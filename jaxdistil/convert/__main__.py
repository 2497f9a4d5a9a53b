"""`python -m jaxdistil.convert import|export`: see `jaxdistil.convert`."""

from __future__ import annotations

import sys

from absl import flags

from jaxdistil import cli

PROG = 'python -m jaxdistil.convert'
DOC = """python -m jaxdistil.convert import --hf=DIR_OR_ID --output=DIR [--init_missing_head]
python -m jaxdistil.convert export --checkpoint=DIR --output=DIR [--layout=...]
python -m jaxdistil.convert export --format=onnx [--quantize=int8] --checkpoint=DIR --output=DIR

import: an HF BERT, DistilBERT, RoBERTa or XLM-RoBERTa checkpoint -> a jaxdistil
model directory. A `*ForSequenceClassification` keeps its head and labels.
export: a train workdir (its latest checkpoint), a jaxdistil model directory or
an HF directory -> an HF directory (DistilBertForMaskedLM, BertForMaskedLM,
RobertaForMaskedLM or XLMRobertaForMaskedLM; a classifier as the layout's
*ForSequenceClassification, with its label names).
export --format=onnx: a classifier -> an ONNX folder (model.onnx, its HF
config.json with the labels, the tokenizer) that ONNX Runtime and
`predict --runtime=onnxruntime` run; --quantize=int8 makes its weights int8
(ONNX Runtime's dynamic quantization). Needs `pip install 'jaxdistil[onnx]'`."""


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('hf', None, 'import: HF model directory or hub id',
                      flag_values=fv)
  flags.DEFINE_string('output', None, 'the new directory to write', flag_values=fv)
  flags.DEFINE_bool('init_missing_head', False, 'import: for a bare encoder '
                    '(BertModel), initialise an MLM head', flag_values=fv)
  flags.DEFINE_string('checkpoint', None, 'export: a train workdir (its latest '
                      'checkpoint), a jaxdistil model directory, or an HF '
                      'directory', flag_values=fv)
  flags.DEFINE_enum('layout', None, ['distilbert', 'bert', 'roberta', 'xlm-roberta'],
                    'export: default the family\'s (roberta, xlm-roberta); for '
                    'BERT, distilbert for models without token types (students), '
                    'bert otherwise', flag_values=fv)
  flags.DEFINE_string('tokenizer', None, "export: tokenizer folder to copy "
                      "(default: the checkpoint's own)", flag_values=fv)
  flags.DEFINE_enum('format', 'hf', ['hf', 'onnx'], 'export: a Hugging Face '
                    'folder, or an ONNX classifier', flag_values=fv)
  flags.DEFINE_enum('quantize', None, ['int8'], 'export --format=onnx: '
                    'int8 weights (ONNX Runtime dynamic quantization)',
                    flag_values=fv)
  flags.DEFINE_bool('overwrite', False, 'export: replace --output if it '
                    'exists (only once the new one is complete)', flag_values=fv)


def export_onnx_cli(args) -> None:
  import os
  from jaxdistil import fs
  from jaxdistil.convert import load_model
  from jaxdistil.convert.hf_files import ConvertError
  from jaxdistil.convert.onnx_out import export_onnx, need
  if not args.overwrite:    # before reading anything
    fs.refuse_nonempty(os.path.abspath(args.output), error=ConvertError)
  need('onnx')
  if args.quantize:
    need('onnxruntime')
  m = load_model(args.checkpoint)
  if m.head is None:
    raise ConvertError(f'{args.checkpoint} has no classifier head: ONNX export '
                       f'is for classifiers (fine-tune one with jaxdistil.glue '
                       f'--save), or export it with --format=hf')
  tok = args.tokenizer or m.tokenizer_dir
  info = export_onnx(m.config, m.params, args.output, head=m.head,
                     classifier=m.classifier, layout=args.layout,
                     tokenizer_dir=tok, quantize=args.quantize,
                     overwrite=args.overwrite,
                     source=m.source or args.checkpoint)
  size = os.path.getsize(os.path.join(args.output, info['model'])) / 2**20
  print(f'jaxdistil.convert: {m.source or args.checkpoint} -> '
        f'{os.path.join(args.output, info["model"])} (ONNX, '
        f'{args.quantize or "float32"}, {size:.1f} MiB, labels '
        f'{", ".join(info["labels"])})'
        + ('' if tok else '; no tokenizer files were available to copy'))


def main(argv=None) -> int:
  from jaxdistil.convert import export, load_model, save_model
  from jaxdistil.convert import hf_config
  from jaxdistil.convert.hf_files import ConvertError
  from jaxdistil.convert.hf_in import import_hf
  try:
    args = cli.parse(PROG, DOC, define_flags, argv,
                     positional=('import', 'export'))
    cli.require(args, *(('hf', 'output') if args.command == 'import'
                        else ('checkpoint', 'output')))
    other = (('checkpoint', 'layout', 'tokenizer', 'quantize', 'overwrite')
             if args.command == 'import' else ('hf', 'init_missing_head'))
    given = [f'--{n}' for n in other if getattr(args, n)]
    if given:
      raise cli.UsageError(f'{", ".join(given)} does not apply to '
                           f'{args.command}: see --help')
    if args.quantize and args.format != 'onnx':
      raise cli.UsageError(f'--quantize={args.quantize} needs --format=onnx '
                           f'(a Hugging Face folder is float32)')
    if args.command == 'import':
      import os
      from jaxdistil import fs
      # before reading anything
      fs.refuse_nonempty(os.path.abspath(args.output), error=ConvertError)
      m = import_hf(args.hf, init_missing_head=args.init_missing_head)
      tok = m.tokenizer_dir
      save_model(args.output, m.config, m.params, m.layout, source=args.hf,
                 tokenizer_dir=tok, pooler=m.pooler, fresh_head=m.fresh_head,
                 head=m.head, classifier=m.classifier)
      c = m.config
      kind = (f'{m.classifier.num_labels}-output classifier, '
              if m.classifier else '')
      print(f'jaxdistil.convert: {args.hf} ({kind}{m.layout}, {c.num_layers} layers, '
            f'hidden {c.hidden_size}, vocab {c.vocab_size}) -> {args.output}'
            + ('' if tok else ' (no tokenizer files found: pass one to train)'))
    elif args.format == 'onnx':
      export_onnx_cli(args)
    else:
      if not args.overwrite:    # before reading anything
        import os
        from jaxdistil import fs
        fs.refuse_nonempty(os.path.abspath(args.output), error=ConvertError)
      m = load_model(args.checkpoint)
      tok = args.tokenizer or m.tokenizer_dir
      layout = export(m.config, m.params, args.output, args.layout, tok,
                      head=m.head, classifier=m.classifier,
                      overwrite=args.overwrite)
      from jaxdistil.convert import names
      arch = (names.CLASSIFIER_ARCHITECTURE if m.head is not None
              else hf_config.ARCHITECTURE)[layout]
      print(f'jaxdistil.convert: {m.source or args.checkpoint} -> {args.output} '
            f'({arch})'
            + ('' if tok else '; no tokenizer files were available to copy'))
  except (cli.UsageError, ConvertError, ValueError, OSError) as e:
    print(f'jaxdistil.convert: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
