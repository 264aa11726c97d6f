"""Where images come from: folder trees, zip/tar archives read in place, NumPy arrays, named sets.

A source is opened into one or more :class:`Collection` objects ("train"/"test" when the source
holds such folders, otherwise "all"). A collection is a list of items (encoded files behind a
:class:`Reader`, or an already decoded uint8 array) with optional integer labels.
"""
from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..utils.errors import SelfSupError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")
VOLUME_SUFFIXES = (".npy", ".npz", ".nii", ".nii.gz")
# What an item file of each kind of source ends with (``open_source(spec, kind)``).
SUFFIXES = {"image": IMAGE_SUFFIXES, "video": VIDEO_SUFFIXES, "volume": VOLUME_SUFFIXES}


class Reader:
    """Reads the bytes of one item by key. Subclasses reopen their handle in each process."""

    description: str = ""

    def read(self, key: str) -> bytes:
        raise NotImplementedError

    def identity(self) -> str:
        """A string that changes when the underlying data changes (used to key the decode cache)."""
        raise NotImplementedError


class FolderReader(Reader):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.description = str(self.root)

    def read(self, key: str) -> bytes:
        with open(self.root / key, "rb") as f:
            return f.read()

    def identity(self) -> str:
        return f"folder:{self.root.resolve()}"


class _ArchiveReader(Reader):
    """Keeps one open handle per process, so DataLoader workers never share a file position."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self._handle = None
        self._pid = -1

    def _open(self):
        raise NotImplementedError

    def handle(self):
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = self._open(), os.getpid()
        return self._handle

    def identity(self) -> str:
        st = self.path.stat()
        return f"{type(self).__name__}:{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"], state["_pid"] = None, -1
        return state


class ZipReader(_ArchiveReader):
    def _open(self):
        return zipfile.ZipFile(self.path)

    def read(self, key: str) -> bytes:
        try:
            return self.handle().read(key)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:  # a damaged member
            raise OSError(f"damaged archive member: {exc}") from exc


class TarReader(_ArchiveReader):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._members: dict[str, tarfile.TarInfo] | None = None

    def _open(self):
        handle = tarfile.open(self.path)
        self._members = {m.name: m for m in handle.getmembers() if m.isfile()}
        return handle

    def read(self, key: str) -> bytes:
        handle = self.handle()
        assert self._members is not None
        try:
            extracted = handle.extractfile(self._members[key])
            if extracted is None:
                raise OSError(f"{key} is not a regular file")
            return extracted.read()
        except (tarfile.TarError, zlib.error, EOFError) as exc:  # a damaged member
            raise OSError(f"damaged archive member: {exc}") from exc

    def __getstate__(self):
        state = super().__getstate__()
        state["_members"] = None
        return state


@dataclass
class Collection:
    """Images and optional labels. ``keys`` name encoded items; ``array`` holds decoded ones."""

    name: str
    keys: list[str]
    labels: np.ndarray | None
    classes: list[str] | None
    reader: Reader | None = None
    array: np.ndarray | None = None  # N x C x H x W uint8, when the source is already decoded
    kind: str = "image"  # or "video", "volume": what the keys name

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and bool((self.labels >= 0).all()) and len(self.keys) > 0

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "Collection":
        idx = np.asarray(indices, dtype=np.int64)
        return Collection(
            name=name or self.name,
            keys=[self.keys[i] for i in idx],
            labels=None if self.labels is None else self.labels[idx],
            classes=self.classes,
            reader=self.reader,
            array=None if self.array is None else self.array[idx],
            kind=self.kind,
        )

    def describe(self) -> str:
        where = self.reader.description if self.reader else self.name
        labels = f", {self.num_classes} classes" if self.has_labels else ", unlabeled"
        noun = {"image": "images", "video": "clips", "volume": "volumes"}[self.kind]
        return f"{len(self)} {noun} from {where}{labels}"


def _list_folder(root: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[str]:
    """Relative paths of item files under root; os.scandir uses d_type, so no stat per file."""
    found: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as entries:
            for entry in entries:
                child = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=True):
                    if not entry.name.startswith("."):
                        stack.append(child)
                elif entry.name.lower().endswith(suffixes) and not entry.name.startswith("."):
                    found.append(child)
    found.sort()
    return found


def _collections_from_keys(keys: list[str], reader: Reader, name: str, kind: str = "image") -> dict[str, Collection]:
    """Group relative paths into collections: train/ and test/ splits, class subfolders as labels."""
    if not keys:
        raise SelfSupError(f"no {kind} files found in {reader.description} (looked for {', '.join(SUFFIXES[kind])})")
    # An archive often wraps everything in one top folder (cifar10/train/...): look through it.
    prefix = ""
    tops = {k.split("/", 1)[0] for k in keys}
    if len(tops) == 1 and all("/" in k for k in keys):
        only = tops.pop()
        if only not in ("train", "test"):
            prefix = only + "/"
    splits: dict[str, list[str]] = {}
    tops = {k[len(prefix):].split("/", 1)[0] for k in keys}
    if {"train", "test"} <= tops:
        for k in keys:
            top = k[len(prefix):].split("/", 1)[0]
            if top in ("train", "test"):
                splits.setdefault(top, []).append(k)
        roots = {s: prefix + s + "/" for s in splits}
    else:
        splits, roots = {"all": keys}, {"all": prefix}
    # Class names come from the union of splits so that train and test share label ids.
    rel = {s: [k[len(roots[s]):] for k in ks] for s, ks in splits.items()}
    labeled = all("/" in r for rs in rel.values() for r in rs)
    classes = sorted({r.split("/", 1)[0] for rs in rel.values() for r in rs}) if labeled else None
    index = {c: i for i, c in enumerate(classes or [])}
    out = {}
    for s, ks in splits.items():
        labels = np.array([index[r.split("/", 1)[0]] for r in rel[s]], dtype=np.int64) if labeled else None
        out[s] = Collection(name=f"{name}:{s}" if s != "all" else name, keys=ks, labels=labels,
                            classes=classes, reader=reader, kind=kind)
    return out


def _to_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """uint8 as it is; other arrays scaled to 0..255 (values in [0, 1] are fractions of full scale)."""
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise SelfSupError(f"{what}: array contains NaN or infinite values")
    hi = float(x.max()) if x.size else 1.0
    scale = 255.0 if hi <= 1.0 else (1.0 if hi <= 255.0 else 255.0 / hi)
    return np.clip(np.rint(x * scale), 0, 255).astype(np.uint8)


def _array_to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """Accept N x H x W, N x H x W x C or N x C x H x W; return uint8 N x C x H x W."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)
    else:
        raise SelfSupError(f"{what}: expected images shaped N x H x W[x C], got shape {x.shape}")
    return np.ascontiguousarray(_to_uint8(x, what))


def _clips_to_ncthw(x: np.ndarray, what: str) -> np.ndarray:
    """Accept clips N x T x H x W or N x T x H x W x C (C = 1 or 3); return uint8 N x C x T x H x W."""
    if x.ndim == 4:
        x = x[..., None]
    if x.ndim != 5 or x.shape[-1] not in (1, 3):
        raise SelfSupError(f"{what}: expected clips shaped N x T x H x W [x C], got shape {x.shape}")
    return np.ascontiguousarray(_to_uint8(x, what).transpose(0, 4, 1, 2, 3))


def collection_from_arrays(images: np.ndarray, labels: np.ndarray | None, name: str,
                           classes: list[str] | None = None) -> Collection:
    images = np.asarray(images)
    # 5-D: clips already shaped uint8 N x C x T x H x W (``_clips_to_ncthw``)
    return _array_collection(images if images.ndim == 5 else _array_to_nchw(images, name), labels, name, classes)


def _array_collection(array: np.ndarray, labels: np.ndarray | None, name: str,
                      classes: list[str] | None = None) -> Collection:
    """A collection of items held in ``array`` as given (volumes: their pool normalizes each one itself)."""
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != len(array):
            raise SelfSupError(f"{name}: {len(array)} items but {len(labels)} labels")
        if classes is None:
            classes = [str(c) for c in range(int(labels.max()) + 1)]
    return Collection(name=name, keys=[f"{name}[{i}]" for i in range(len(array))], labels=labels,
                      classes=classes, array=array)


def _load_digits() -> dict[str, Collection]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16: rescale to the full uint8 range.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return {"all": collection_from_arrays(images, digits.target, "digits",
                                          [str(c) for c in range(10)])}


def _load_numpy(path: Path, kind: str = "image") -> dict[str, Collection]:
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            arrays = {"images": np.load(path, allow_pickle=False)}
    except Exception as exc:  # corrupt or not an array file
        raise SelfSupError(f"cannot read NumPy file {path}: {exc}") from exc
    images = next((arrays[k] for k in ("images", "clips", "videos", "x", "X", "data") if k in arrays), None)
    if images is None:
        raise SelfSupError(f"{path}: no 'images' or 'x' array inside (found {sorted(arrays)})")
    labels = next((arrays[k] for k in ("labels", "y", "targets") if k in arrays), None)
    if kind == "video":
        collection = collection_from_arrays(_clips_to_ncthw(np.asarray(images), path.name), labels, path.name)
    elif kind == "volume":
        volumes = np.asarray(images)
        if volumes.ndim != 4:
            raise SelfSupError(f"{path.name}: expected volumes shaped N x D x H x W, got shape {volumes.shape}")
        collection = _array_collection(volumes, labels, path.name)
    else:
        collection = collection_from_arrays(images, labels, path.name)
    collection.kind = kind
    return {"all": collection}


def _load_cifar10(root: str | None) -> dict[str, Collection]:
    """torchvision's CIFAR-10 in its python format; downloads when online and absent."""
    import torchvision

    base = Path(root or os.environ.get("SELFSUP_DATA_ROOT", Path.home() / ".cache" / "selfsup"))
    out = {}
    for split in ("train", "test"):
        try:
            ds = torchvision.datasets.CIFAR10(str(base), train=split == "train", download=True)
        except Exception as exc:
            raise SelfSupError(f"cifar10: not found under {base} and the download failed ({exc}); "
                               "pass a local copy with --data PATH") from exc
        out[split] = collection_from_arrays(ds.data, np.asarray(ds.targets), f"cifar10:{split}",
                                            list(ds.classes))
    return out


def open_source(spec: str, kind: str = "image") -> dict[str, Collection]:
    """Open a data flag value: a folder, .zip/.tar archive, .npy/.npz file, 'digits' or 'cifar10[:PATH]'.

    ``kind`` is what the items are: "image" (the default), "video" (video files; arrays of
    clips N x T x H x W [x C] become uint8 N x C x T x H x W) or "volume" (one .npy/.npz/NIfTI file
    per volume; a single array file holds volumes N x D x H x W, kept as they are).
    """
    if kind not in SUFFIXES:
        raise ValueError(f"unknown source kind {kind!r}")
    if kind == "image" and spec == "digits":
        return _load_digits()
    if kind == "image" and (spec == "cifar10" or spec.startswith("cifar10:")):
        local = spec.partition(":")[2] or None
        if local and Path(local).exists() and not Path(local).is_dir():
            return open_source(local)
        return _load_cifar10(local)
    path = Path(spec).expanduser()
    if not path.exists():
        raise SelfSupError(f"data not found: {spec}")
    name = path.name.lower()
    if name.endswith((".npy", ".npz")) and not path.is_dir():
        return _load_numpy(path, kind)
    if kind == "volume" and name.endswith((".nii", ".nii.gz")):
        raise SelfSupError(f"{spec} is a single volume; pass the folder that holds the volumes")
    keys, reader = source_files(spec, kind)
    stem = path.name if path.is_dir() else (path.stem if name.endswith(".zip") else path.name.split(".")[0])
    return _collections_from_keys(keys, reader, stem, kind)


def source_files(spec: str, kind: str = "image") -> tuple[list[str], Reader]:
    """The item files of a folder, .zip or .tar (paths relative to it, sorted) and the reader of their bytes."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise SelfSupError(f"data not found: {spec}")
    suffixes = SUFFIXES[kind]
    if path.is_dir():
        return _list_folder(path, suffixes), FolderReader(path)
    name = path.name.lower()
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as z:
                keys = sorted(n for n in z.namelist() if n.lower().endswith(suffixes) and not n.endswith("/"))
        except zipfile.BadZipFile as exc:
            raise SelfSupError(f"corrupt zip archive {path}: {exc}") from exc
        return keys, ZipReader(path)
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        try:
            with tarfile.open(path) as t:
                keys = sorted(m.name for m in t.getmembers() if m.isfile() and m.name.lower().endswith(suffixes))
        except tarfile.TarError as exc:
            raise SelfSupError(f"corrupt tar archive {path}: {exc}") from exc
        return keys, TarReader(path)
    if name.endswith(suffixes):
        raise SelfSupError(f"{spec} is a single {kind} file; pass the folder that holds the files")
    raise SelfSupError(f"unsupported data {spec}: expected a folder, .zip, .tar, .npy or .npz"
                       + (", 'digits' or 'cifar10'" if kind == "image" else f" of {kind} files"))


__all__ = ["Collection", "Reader", "FolderReader", "ZipReader", "TarReader", "open_source", "source_files",
           "collection_from_arrays"]
