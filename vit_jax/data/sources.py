"""Where examples come from: a TFDS dataset or an image folder, and one host's slice of a split.

A host's slice is one of three kinds, chosen by what the pipeline can do with it cheaply:
`ArraySplit` (decoded pixels in memory: random access by gather), `FileSplit` (one file per
example: random access by path, decoded per example) and `RecordSplit` (TFDS TFRecord shards:
read in order, decoded per example). `reading.examples()` gives each in one canonical order.

Folder datasets: root/<split>/<class>/*.{jpg,jpeg,png}. Classes are the sorted subfolders of the
training split; images are decoded as stored, and all must have the channel count (1 or 3) of the
first training image.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import tensorflow_datasets as tfds

from vit_jax import errors, paths
from vit_jax.data import fashion_mnist, subset
from vit_jax.data.common import DatasetInfo, even_bounds

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySplit:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int32 [N]

    @property
    def size(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True, eq=False)
class FileSplit:
    paths: tuple[str, ...]
    labels: np.ndarray  # int32 [N]
    channels: int

    @property
    def size(self) -> int:
        return len(self.paths)


@dataclasses.dataclass(frozen=True, eq=False)
class RecordSplit:
    instructions: tuple[tuple[str, int, int], ...]  # (file, skip, take), in order.
    size: int
    shape: tuple  # Stored (H, W, C); H and W are None when images vary in size.
    keys: tuple[str, str]  # Feature names of image and label.


def dataset_info(data_config) -> DatasetInfo:
    """Classes, channels and split sizes of the config's dataset (prepares only Fashion-MNIST)."""
    if data_config.source == "folder":
        folder = Folder.open(data_config)
        classes, channels = folder.classes, folder.channels
        num_train = len(folder.files(data_config.train_split)[0])
        num_eval = len(folder.files(data_config.eval_split)[0])
    else:
        builder = tfds_builder(data_config)
        image_key, label_key = feature_keys(builder)
        classes = builder.info.features[label_key].names
        channels = builder.info.features[image_key].shape[-1]
        num_train = split_info(builder, data_config.train_split).num_examples
        num_eval = split_info(builder, data_config.eval_split).num_examples
    if data_config.train_examples:
        subset.check_size(
            data_config.train_examples, available=num_train, split=data_config.train_split
        )
        num_train = data_config.train_examples
    size = data_config.image_size
    return DatasetInfo(
        num_classes=len(classes),
        channels=channels,
        num_train=num_train,
        num_eval=num_eval,
        class_names=tuple(classes),
        image_shape=(size, size, channels),
    )


def host_split(data_config, split: str, *, process_index: int, process_count: int):
    """The `process_index`-th of `process_count` even, disjoint parts of `split` (undecoded)."""
    if data_config.source == "folder":
        folder = Folder.open(data_config)
        files, labels = folder.files(split)
        start, stop = even_bounds(len(files), process_count, process_index)
        return FileSplit(tuple(files[start:stop]), labels[start:stop], folder.channels)
    builder = tfds_builder(data_config)
    info = split_info(builder, tfds.even_splits(split, n=process_count)[process_index])
    keys = feature_keys(builder)
    instructions = tuple((f.filename, f.skip, f.take) for f in info.file_instructions)
    shape = tuple(builder.info.features[keys[0]].shape)
    return RecordSplit(instructions, info.num_examples, shape, keys)


def host_sizes(data_config, split: str, *, process_count: int) -> list[int]:
    """Examples of `split` on each process, in process order."""
    if data_config.source == "folder":
        n = len(Folder.open(data_config).files(split)[0])
        return [
            stop - start
            for start, stop in map(
                functools.partial(even_bounds, n, process_count), range(process_count)
            )
        ]
    builder = tfds_builder(data_config)
    parts = tfds.even_splits(split, n=process_count)
    return [split_info(builder, part).num_examples for part in parts]


# --- TFDS ---------------------------------------------------------------------------------------


def tfds_builder(data_config):
    """The prepared builder; Fashion-MNIST is prepared offline on first use."""
    data_dir = fashion_mnist.resolve_data_dir(data_config.data_dir)
    return _builder(data_config.name, data_dir)


@functools.lru_cache(maxsize=8)
def _builder(name: str, data_dir: str):
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise errors.UserError(f"config.data.name={name!r}: unknown TFDS dataset") from None
    if not builder.is_prepared() and builder.name == fashion_mnist.TFDS_NAME:
        fashion_mnist.prepare(data_dir=data_dir)
        builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise errors.MissingFile(
            f"TFDS dataset {name!r} is not prepared in {data_dir}: run "
            f"`tfds build {name} --data_dir={data_dir}` (or set config.data.data_dir)"
        )
    if builder.info.file_format.value != "tfrecord":
        raise errors.UserError(f"TFDS dataset {name!r}: only the tfrecord file format is supported")
    return builder


def feature_keys(builder) -> tuple[str, str]:
    """(image, label) feature names: the supervised keys, checked to be uint8 Image/ClassLabel."""
    image_key, label_key = builder.info.supervised_keys or ("image", "label")
    features = builder.info.features
    image, label = features[image_key], features[label_key]
    if not isinstance(image, tfds.features.Image) or not isinstance(
        label, tfds.features.ClassLabel
    ):
        raise errors.UserError(
            f"TFDS dataset {builder.name!r}: needs an Image and a ClassLabel feature"
        )
    if image.np_dtype != np.uint8 or image.shape[-1] not in (1, 3):
        raise errors.UserError(
            f"TFDS dataset {builder.name!r}: only uint8 images of 1 or 3 channels"
        )
    return image_key, label_key


def split_info(builder, split):
    """TFDS's SplitInfo of a split (any TFDS split expression); one-line ValueError if unknown."""
    try:
        return builder.info.splits[split]
    except (KeyError, ValueError, AssertionError) as e:
        message = (str(e).strip().splitlines() or [repr(split)])[0]
        raise errors.UserError(
            f"TFDS dataset {builder.name!r}, split {split!r}: {message}"
        ) from None


# --- Folders ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Folder:
    """An image-folder dataset: root/<split>/<class>/*.{jpg,jpeg,png}."""

    root: str
    classes: tuple[str, ...]
    channels: int

    @classmethod
    def open(cls, data_config) -> Folder:
        root, train_split = data_config.root, data_config.train_split
        path = _split_dir(root, train_split)
        classes = tuple(sorted(d.name for d in path.iterdir() if d.is_dir()))
        if not classes:
            raise errors.UserError(f"{path}: no class subfolders")
        for name in classes:  # An empty class would be a label the model never sees.
            if not any(_is_image(f.name) for f in (path / name).iterdir()):
                kinds = "/".join(IMAGE_EXTENSIONS)
                raise errors.UserError(f"{path / name}: class folder has no {kinds} images")
        folder = cls(root, classes, channels=0)
        first = folder.files(train_split)[0][0]
        return dataclasses.replace(folder, channels=image_channels(first))

    def files(self, split: str) -> tuple[list[str], np.ndarray]:
        """(paths, int32 labels) of a split, ordered by class, then file name."""
        path = _split_dir(self.root, split)
        unknown = sorted({d.name for d in path.iterdir() if d.is_dir()} - set(self.classes))
        if unknown:
            raise errors.UserError(
                f"{path}: class folder {unknown[0]!r} is not in the training split"
            )
        files, labels = [], []  # Listed through vit_jax.paths; TF reads the bytes (gs:// too).
        for label, name in enumerate(self.classes):
            class_dir = path / name
            if class_dir.is_dir():
                names = sorted(f.name for f in class_dir.iterdir() if _is_image(f.name))
                files += [str(class_dir / f) for f in names]
                labels += [label] * len(names)
        if not files:
            raise errors.UserError(
                f"{path}: no {'/'.join(IMAGE_EXTENSIONS)} images in class folders"
            )
        return files, np.asarray(labels, np.int32)


def image_channels(path: str) -> int:
    """Channel count of an image file as stored (1 or 3 accepted)."""
    import tensorflow as tf  # deferred: TensorFlow, only to decode one image.

    try:
        image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
    except tf.errors.InvalidArgumentError as e:
        raise errors.UserError(
            f"{path}: cannot decode the image ({e.message.splitlines()[0]})"
        ) from None
    channels = int(image.shape[-1])
    if channels not in (1, 3):
        raise errors.UserError(f"{path}: image has {channels} channels (only 1 or 3 are supported)")
    return channels


def _split_dir(root: str | None, split: str):
    if not root or not paths.isdir(root):
        raise errors.MissingFile(f"config.data.root={root!r}: folder not found")
    path = paths.path(root) / split
    if not path.is_dir():
        raise errors.MissingFile(f"{path}: split folder {split!r} not found")
    return path


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)
