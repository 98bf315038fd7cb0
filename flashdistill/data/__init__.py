"""Datasets (prompts, image-caption pairs, cached latents/embeddings), resumable batch streams and
teacher data generation (``flashdistill generate-data``)."""

from .batch import batch_size_of, collate, split_batch
from .stream import BatchStream, epoch_permutation

__all__ = ["BatchStream", "epoch_permutation", "collate", "split_batch", "batch_size_of"]
