"""Data: text sources, tokenisation into shards, and the tf.data input pipeline."""
