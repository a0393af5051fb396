"""TFDS datasets: info, loading to arrays, and downloading through TFDS's own code."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path

import numpy as np

from tfvision_cli.data.base import Dataset, DatasetInfo, Stream
from tfvision_cli.errors import DataError, UsageError, did_you_mean
from tfvision_cli.files import atomic_file
from tfvision_cli.tf_import import tf as import_tf
from tfvision_cli.tf_import import tfds as import_tfds

OFFLINE_HINT = (
    "to work offline, point --data-dir or TFDS_DATA_DIR at a directory that holds the "
    "dataset already prepared by TFDS (as `tfvision data download` writes it on a machine "
    "with a network); `digits`, and `mnist` from the files packaged with tfvision, need none"
)
# Variable-size datasets (tf_flowers, ...) are resized to this unless --image-size says.
DEFAULT_IMAGE_SIZE = (64, 64)


def resolve_data_dir(data_dir: str | None) -> str | None:
    """--data-dir, else TFDS_DATA_DIR, else TFDS's default (None)."""
    return data_dir or os.environ.get("TFDS_DATA_DIR") or None


_VERSION = re.compile(r"\d+\.\d+\.\d+")


def _prepared_dir(name: str, data_dir: str | None) -> Path | None:
    """DATA_DIR/NAME/VERSION when exactly one version of a plain name is prepared there. Every
    prepared folder of the name (configs too) is checked first: TFDS may read any of them."""
    base = name.split(":")[0].split("/")[0]
    root = Path(resolve_data_dir(data_dir) or "~/tensorflow_datasets").expanduser() / base
    try:
        prepared = [
            p.parent
            for p in (*root.glob("*/dataset_info.json"), *root.glob("*/*/dataset_info.json"))
        ]
    except OSError:
        return None
    for folder in prepared:
        check_feature_classes(folder)
    if name != base:  # a config or a pinned version: TFDS resolves those
        return None
    versions = [p for p in prepared if p.parent == root and _VERSION.fullmatch(p.name)]
    return versions[0] if len(versions) == 1 else None


def builder_from_folder(version_dir: Path):
    """tfds.builder_from_directory, once the folder's feature classes are TFDS's own."""
    check_feature_classes(version_dir)
    return import_tfds().builder_from_directory(str(version_dir))


def check_feature_classes(version_dir: Path) -> None:
    """TFDS imports whatever module a features.json names (FeatureConnector.cls_from_name): a
    folder from elsewhere must not choose code to run, so only TFDS's own classes pass."""
    import json

    for meta in ("features.json", "dataset_info.json"):
        path = version_dir / meta
        try:
            text = path.read_text() if path.is_file() else "{}"
            names = _class_names(json.loads(text))
        except (OSError, ValueError, RecursionError):
            raise DataError(f"{path} is not readable JSON") from None
        foreign = sorted(n for n in names if not n.startswith("tensorflow_datasets."))
        if foreign:
            raise DataError(
                f"{path} names the Python class {foreign[0]!r}: only TFDS's own feature "
                "classes are read (a dataset folder must not choose code to run)"
            )


def _class_names(value) -> set[str]:
    """Every feature class a TFDS metadata file names, at any depth."""
    names, stack = set(), [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, v in item.items():
                if key in ("pythonClassName", "python_class_name"):
                    names.add(str(v))
                else:
                    stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)
    return names


def get_builder(name: str, data_dir: str | None):
    """The dataset's TFDS builder. A prepared dataset is read from its folder: `tfds.builder`
    first imports TFDS's ~500 legacy builder modules (0.2 s of every start, benchmarks/RESULTS.md);
    with several versions prepared, or none, TFDS chooses as usual."""
    tfds = import_tfds()
    prepared = _prepared_dir(name, data_dir)
    if prepared is not None:  # its feature classes were checked by _prepared_dir
        return tfds.builder_from_directory(str(prepared))
    try:
        return tfds.builder(name, data_dir=resolve_data_dir(data_dir))
    except tfds.core.registered.DatasetNotFoundError:
        base = name.split(":")[0].split("/")[0]
        raise UsageError(
            f"unknown dataset {name!r}.{did_you_mean(base, tfds.list_builders())}",
            hint="`tfvision data list` shows common ones; any TFDS name or a folder works",
        ) from None
    except (ValueError, AssertionError) as e:
        raise UsageError(f"dataset {name!r}: {str(e).splitlines()[0]}") from None


def _supervised_keys(builder) -> tuple[str, str]:
    keys = builder.info.supervised_keys
    features = builder.info.features
    if keys and len(keys) == 2 and isinstance(keys[0], str):
        image_key, label_key = keys
    else:
        image_key, label_key = "image", "label"
    tfds = import_tfds()
    if (
        image_key not in features
        or label_key not in features
        or not isinstance(features[image_key], tfds.features.Image)
        or not isinstance(features[label_key], tfds.features.ClassLabel)
    ):
        raise UsageError(
            f"dataset {builder.name!r} is not an image-classification dataset "
            "(it has no (image, class label) pair)"
        )
    return image_key, label_key


class TfdsDataset(Dataset):
    """A dataset read through a TFDS builder (a registered name or a directory on disk)."""

    @classmethod
    def from_name(cls, name: str, data_dir: str | None = None, image_size=None) -> TfdsDataset:
        dataset = cls(get_builder(name, data_dir), name, image_size)
        dataset._data_dir = data_dir
        return dataset

    @classmethod
    def from_builder(cls, builder, name: str, image_size=None) -> TfdsDataset:
        return cls(builder, name, image_size)

    def __init__(self, builder, name: str, image_size=None):
        self.name = name
        self._data_dir: str | None = None
        self.builder = builder
        self.image_key, self.label_key = _supervised_keys(self.builder)
        features = self.builder.info.features
        h, w, c = features[self.image_key].shape
        self.resize_to = None
        if image_size is not None and (h, w) != tuple(image_size):
            self.resize_to = tuple(image_size)
        elif h is None or w is None:
            self.resize_to = DEFAULT_IMAGE_SIZE
        if self.resize_to:
            h, w = self.resize_to
        prepared = self.builder.is_prepared()
        self.info = DatasetInfo(
            name=name,
            source="tfds",
            image_shape=(h, w, c or 3),
            class_names=list(features[self.label_key].names),
            splits={k: v.num_examples for k, v in self.builder.info.splits.items()}
            if prepared
            else {},
            location=str(self.builder.data_dir),
            description=(self.builder.info.description or "").strip().splitlines()[0]
            if self.builder.info.description
            else "",
            extra={"prepared": prepared, "version": str(self.builder.info.version)},
        )

    def is_available(self) -> bool:
        return bool(self.builder.is_prepared())

    def ensure_available(self) -> None:
        if not self.is_available():
            download(self.name, self._data_dir)

    def require_available(self) -> None:
        if not self.is_available():
            raise DataError(
                f"dataset {self.name!r} is not prepared in {self.builder.data_dir_root}",
                hint=f"run `tfvision data download {self.name}`, or {OFFLINE_HINT}",
            )

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        self.require_available()
        if split not in self.info.splits:
            raise UsageError(
                f"dataset {self.name!r} has no split {split!r} "
                f"(it has {', '.join(self.info.splits)})"
            )
        cache = _cache_path(self.builder, split, self.resize_to)
        if cache is not None and cache.is_file():
            try:
                with np.load(cache) as z:
                    return z["images"], z["labels"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache is rebuilt below
        images, labels = self._decode(split)
        if cache is not None:
            _write_cache(cache, images, labels)
        return images, labels

    def _decode(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        tfds = import_tfds()
        ds = self._pairs(self.builder.as_dataset(split=split, shuffle_files=False))
        xs, ys = [], []
        for x, y in tfds.as_numpy(ds.batch(16384)):
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys).astype(np.int64)

    def _pairs(self, ds):
        """TFDS records -> (uint8 image, int64 label), resized as the info says."""
        tf = import_tf()
        ik, lk = self.image_key, self.label_key
        size = self.resize_to

        def pair(ex):
            image = ex[ik]
            if size:
                image = tf.image.resize(image, size, antialias=True)
                image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
            return image, tf.cast(ex[lk], tf.int64)

        return ds.map(pair, num_parallel_calls=tf.data.AUTOTUNE)

    def stream(self, split: str, carve: tuple = ()) -> Stream:
        """The split read from its TFRecord files as it is used: the files interleaved (each
        worker its own files when there are enough), records decoded in parallel by the
        dataset's TFDS features. carve (see Dataset): a record is picked by a hash of its bytes
        and the seed, so a part is the same whatever order the files are read in, and identical
        images never straddle two parts (its size is estimated: not stratified)."""
        self.require_available()
        part = self.builder.info.splits[split]
        paths = [str(f) for f in part.filepaths]
        count = float(part.num_examples)
        for fraction, _, inside in carve:
            count *= fraction if inside else 1 - fraction
        features = self.builder.info.features

        def open_(shuffle: bool = False, seed: int = 0, shard: tuple[int, int] | None = None):
            tf = import_tf()
            by_file = shard is not None and len(paths) >= shard[1]
            files = paths[shard[0] :: shard[1]] if by_file else paths
            ds = tf.data.Dataset.from_tensor_slices(files)
            if shuffle:
                ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
            ds = ds.interleave(
                tf.data.TFRecordDataset,
                cycle_length=min(len(files), 8) if shuffle else 1,
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            if shard is not None and not by_file:  # too few files: every k-th record
                ds = ds.shard(shard[1], shard[0])
            if carve:  # picked in batches of records, before anything is decoded
                ds = ds.batch(1024).map(
                    lambda records: tf.boolean_mask(records, _picked(records, carve)),
                    num_parallel_calls=tf.data.AUTOTUNE,
                )
                ds = ds.unbatch()
            ds = ds.map(features.deserialize_example, num_parallel_calls=tf.data.AUTOTUNE)
            return self._pairs(ds)

        return Stream(count=max(1, round(count)), files=len(paths), open=open_)


def _picked(records, carve: tuple):
    """Whether each serialized record is in the carved part: each step of carve (see
    Dataset.stream) keeps or drops it by a hash of its bytes and the step's seed."""
    tf = import_tf()
    buckets = 1_000_000
    keep = tf.ones_like(records, dtype=tf.bool)
    for fraction, seed, inside in carve:
        key = tf.strings.join([records, f"/{seed}"])
        hit = tf.strings.to_hash_bucket_fast(key, buckets) < int(fraction * buckets)
        keep = tf.logical_and(keep, hit if inside else tf.logical_not(hit))
    return keep


def _network_reachable(
    host: str = "storage.googleapis.com", port: int = 443, timeout: float = 3.0
) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def on_disk(name: str, data_dir: str | None = None) -> bool:
    """True when a version of the TFDS dataset name is prepared in the data directory."""
    root = Path(resolve_data_dir(data_dir) or "~/tensorflow_datasets").expanduser()
    try:
        return any((root / name.split(":")[0]).glob("*/dataset_info.json"))
    except OSError:
        return False


def can_download() -> bool:
    """Whether TFDS's download servers answer (a probe of at most 3 s, without TensorFlow)."""
    return _network_reachable()


def download(name: str, data_dir: str | None = None) -> DatasetInfo:
    """Download and prepare a TFDS dataset with TFDS's own code (progress bars on stderr)."""
    # TFDS retries for minutes when there is no network; a quick probe, made before
    # TensorFlow is even imported, fails in seconds.
    if not on_disk(name, data_dir) and not _network_reachable():
        raise DataError(f"cannot download {name!r}: no network", hint=OFFLINE_HINT)
    ds = TfdsDataset.from_name(name, data_dir=data_dir)
    if ds.builder.is_prepared():
        return ds.info
    try:
        ds.builder.download_and_prepare()
    except Exception as e:  # TFDS raises many kinds: network, checksum, manual-download
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"downloading {name!r} failed: {first}", hint=OFFLINE_HINT) from e
    return TfdsDataset.from_name(name, data_dir=data_dir).info


def cache_dir() -> Path | None:
    """Decoded arrays are cached here ($TFVISION_CACHE_DIR, else ~/.cache/tfvision; 'off')."""
    value = os.environ.get("TFVISION_CACHE_DIR", "")
    if value.lower() in ("off", "0", "none"):
        return None
    return Path(value).expanduser() if value else Path("~/.cache/tfvision").expanduser()


def _cache_path(builder, split: str, resize_to) -> Path | None:
    """A cache file named by what it depends on: the data files' paths, sizes and times."""
    root = cache_dir()
    if root is None:
        return None
    data_dir = Path(str(builder.data_dir))
    files = sorted(p for p in data_dir.glob(f"*-{split}.*") if p.is_file())
    if not files:
        return None
    key = hashlib.sha256(
        repr(
            [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
            + [resize_to]
        ).encode()
    ).hexdigest()[:16]
    return root / "arrays" / f"{builder.name}-{builder.info.version}-{split}-{key}.npz"


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Best effort: a cache that cannot be written is simply not used."""
    try:
        with atomic_file(path, suffix=".npz") as tmp:
            np.savez(tmp, images=images, labels=labels)
    except OSError:
        pass
