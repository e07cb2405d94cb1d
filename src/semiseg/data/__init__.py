"""Data: layouts (MSD, h5, 2D folders), verification, splits, preprocessing, datasets, sampling,
augmentation and the embedded ``synthbrain`` dataset. Import submodules directly."""
