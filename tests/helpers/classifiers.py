"""Tiny random Hugging Face sequence classifiers and padded rows for them,
shared by the classifier tests (conversion, ONNX export)."""

import numpy as np
import torch
import transformers

from helpers.parity import randomize_

VOCAB, HIDDEN, LAYERS, HEADS, MLP, MAX_POS = 57, 32, 2, 4, 64, 40
LABELS = ('negative', 'positive', 'neutral')


def hf_classifier(layout: str, num_labels: int = 3, labels=LABELS, seed: int = 0,
                  problem_type=None):
  common = dict(vocab_size=VOCAB, max_position_embeddings=MAX_POS,
                num_labels=num_labels, attn_implementation='eager')
  if labels is not None:
    common.update(id2label=dict(enumerate(labels[:num_labels])),
                  label2id={l: i for i, l in enumerate(labels[:num_labels])})
  if problem_type:
    common['problem_type'] = problem_type
  if layout == 'distilbert':
    config = transformers.DistilBertConfig(
        dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=MLP, dropout=0.0,
        attention_dropout=0.0, seq_classif_dropout=0.0, **common)
    cls = transformers.DistilBertForSequenceClassification
  else:
    config_cls, cls = {
        'bert': (transformers.BertConfig,
                 transformers.BertForSequenceClassification),
        'roberta': (transformers.RobertaConfig,
                    transformers.RobertaForSequenceClassification),
        'xlm-roberta': (transformers.XLMRobertaConfig,
                        transformers.XLMRobertaForSequenceClassification),
    }[layout]
    extra = (dict(type_vocab_size=2) if layout == 'bert' else
             dict(type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                  eos_token_id=2, layer_norm_eps=1e-5))
    config = config_cls(hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                        num_attention_heads=HEADS, intermediate_size=MLP,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        classifier_dropout=0.0, **extra, **common)
  model = cls(config).eval()
  randomize_(model, seed)
  return model


def rows(layout: str, seed: int = 0):
  """Random ids with trailing padding, the first row full; specials as the
  family's ([CLS]=2/[SEP]=3 style ids for BERT, <s>=0 </s>=2 for RoBERTa)."""
  rng = np.random.default_rng(seed)
  lengths = (12, 7, 10, 4)
  roberta = layout in ('roberta', 'xlm-roberta')
  pad = 1 if roberta else 0
  ids = rng.integers(5, VOCAB, size=(len(lengths), 12))
  mask = np.zeros_like(ids)
  types = np.zeros_like(ids)
  for r, n in enumerate(lengths):
    ids[r, n:] = pad
    mask[r, :n] = 1
    if layout == 'bert':
      types[r, n // 2:n] = 1
  return ids, mask, types


def their_logits(model, layout, ids, mask, types):
  kw = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
  if layout == 'bert':
    kw['token_type_ids'] = torch.tensor(types)
  with torch.no_grad():
    return model(**kw).logits.numpy()
