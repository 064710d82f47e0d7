"""Dataset registry: name -> tensors plus metadata (modality, classes, source).

Every loader returns a `DataBundle` of CPU tensors with a fixed train / test split. Splits and
subsets are seeded by `split_seed`, never by the run seed: all arms and seeds see the same data, only
the order differs. `DataBundle.fingerprint` identifies the training tensors in order.
Three kinds of source, one module each:
- offline, inside installed packages (offline.py): digits, breast_cancer, mnist5k, imdb, japanese_vowels;
- published archives read in their own layout (cifar.py, images.py, audio.py, text.py): cifar10,
  cifar100, svhn, tinyimagenet, speechcommands, imdb_full, found in a data folder or downloaded and
  checksummed (sources.py holds the one table of URLs and checksums, download.py the fetcher);
- local-only copies: cifar10's JPEG re-encoding, fsdd.
`check_available(name, **args)` says where a dataset will come from, or why it cannot, without decoding.
"""
from .core import DATASETS, DataBundle, DataError, _load_cached, load_dataset, stratified_subset, tensor_digest
from .download import download, file_digest
from .sources import ARCHIVES, Remote, check_available, locate
from .text import build_vocab, encode, tokenize
from .offline import read_ts  # the registering modules: importing them fills DATASETS
from .images import NORMALISATIONS, channel_stats, normalise_images
from .cifar import CIFAR10_CLASSES, CIFAR_MEAN, CIFAR_STD, read_cifar_jpeg_archive, read_cifar_pickles
from .audio import log_mel, mel_filterbank

__all__ = [
    "DATASETS", "DataBundle", "DataError", "_load_cached", "load_dataset", "stratified_subset",
    "tensor_digest", "download", "file_digest", "ARCHIVES", "Remote", "check_available", "locate", "build_vocab",
    "encode", "tokenize", "read_ts", "NORMALISATIONS", "channel_stats", "normalise_images", "CIFAR10_CLASSES",
    "CIFAR_MEAN", "CIFAR_STD", "read_cifar_jpeg_archive", "read_cifar_pickles", "log_mel", "mel_filterbank",
]
