"""Models: one BERT encoder + MLM head, configured as teacher or student."""
