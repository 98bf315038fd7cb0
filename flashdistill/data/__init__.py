"""Datasets (prompts, image-caption pairs, cached latents/embeddings), resumable batch streams and
teacher data generation (``flashdistill generate-data``, :mod:`flashdistill.data.generate`)."""

from .batch import batch_size_of, collate, split_batch
from .cache import LatentDataset, write_sharded
from .errors import DataError
from .images import ImageCaptionDataset
from .prompts import PromptDataset, read_prompts
from .stream import BatchStream, epoch_permutation

__all__ = [
    "BatchStream",
    "epoch_permutation",
    "collate",
    "split_batch",
    "batch_size_of",
    "DataError",
    "PromptDataset",
    "read_prompts",
    "ImageCaptionDataset",
    "LatentDataset",
    "write_sharded",
]
