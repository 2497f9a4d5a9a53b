"""jaxdistil: DistilBERT knowledge distillation in JAX/Flax, TPU-first."""

__version__ = '0.1.0'
