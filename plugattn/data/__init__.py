"""The data room: datasets (real on-disk formats, checked), batch augmentation and seeded, sharded loaders.

dataset = create_dataset("cifar10", "train", download=True)
loader = create_loader(dataset, batch_size=128, train=True, seed=0, augment={"pad": 4, "flip": True})
for epoch in range(epochs):
    loader.set_epoch(epoch)
    for x, y in loader:  # float32 (B, 3, 32, 32) normalised, int64 (B,)
        ...
"""

from plugattn.data.download import DownloadError, download_dataset, download_file
from plugattn.data.loader import Loader, create_loader
from plugattn.data.records import ArrayDataset, DatasetError, DatasetNotFoundError, FolderDataset
from plugattn.data.registry import create_dataset, dataset_entry, dataset_splits, list_datasets
from plugattn.data.transforms import BatchAugment, RandomResizedCropFlip, ResizeCenterCrop

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
    "create_dataset",
    "create_loader",
    "dataset_entry",
    "dataset_splits",
    "download_dataset",
    "download_file",
    "list_datasets",
]
