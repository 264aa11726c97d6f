"""The pretraining pool of a config: images (decoded, streamed or sharded), texts, clips or volumes."""
from __future__ import annotations

import logging
from pathlib import Path

from ..config import PretrainConfig
from ..data.crops import native_crops, segmentation_pool
from ..data.decode import DecodeError, decode_bytes
from ..data.decoded import decoded_pool
from ..data.images import ImageSpec, Prepared, probe_spec, spec_from_shape
from ..data.pool import DecodedPool
from ..data.shards import ShardedPool, is_shard_spec
from ..data.sources import Collection
from ..data.splits import train_test
from ..data.text import TextPool, TokenSpec, is_text_source, open_text_pool, read_texts
from ..data.video import ClipSpec, is_video_source, probe_clip_spec
from ..data.volume import VolumeSpec, probe_volume_spec
from ..methods import METHODS, Method
from ..utils.distributed import DistContext, barrier
from ..utils.errors import ConfigError, SelfSupError

log = logging.getLogger("selfsup")
Pool = Prepared | ShardedPool | TextPool | DecodedPool
PoolSpec = ImageSpec | TokenSpec | ClipSpec | VolumeSpec


def _open_text_pool(cfg: PretrainConfig, out: Path, part: DistContext) -> tuple[TextPool, TokenSpec, TextPool | None]:
    """The deduplicated, tokenized corpus (rank 0 trains OUT/tokenizer.json; the others read it) and
    any --test texts, tokenized alike."""
    kind = METHODS.get(cfg.method).tokenizer
    pool = open_text_pool(cfg.data, out, kind, cfg.vocab_size, cfg.max_length) if part.is_main else None
    barrier()
    if pool is None:
        pool = open_text_pool(cfg.data, out, kind, cfg.vocab_size, cfg.max_length, train=False)
    test = None
    if cfg.test:
        collection = read_texts(cfg.test)
        if pool.classes and collection.classes and collection.classes != pool.classes:
            raise SelfSupError(f"{cfg.test}: classes {collection.classes} differ from the training data's {pool.classes}")
        test = TextPool(collection, pool.tokenizer, pool.spec)
    return pool, pool.spec, test


def _open_decoded_pool(cfg: PretrainConfig, out: Path, part: DistContext, modality: str,
                       progress: bool) -> tuple[DecodedPool, ClipSpec | VolumeSpec, Collection | None]:
    """Video files (or clip arrays) decoded into clips, or volume files normalized and resampled; their
    settings; and any test set."""
    if is_text_source(cfg.data):
        raise ConfigError(f"{cfg.method} is a {modality} method: --data must be a folder or archive of {modality} "
                          f"files or a .npy/.npz array of them, not text ({cfg.data})")
    train, test = train_test(cfg.data, cfg.test, out, kind=modality) if part.is_main else (None, None)
    barrier()
    if not part.is_main:
        train, test = train_test(cfg.data, cfg.test, out, kind=modality)
    if modality == "video":
        spec = probe_clip_spec(train, cfg.frames, cfg.frame_stride, cfg.image_size)
    else:
        spec = probe_volume_spec(train, cfg.image_size)
    return decoded_pool(train, spec, strict=cfg.strict, progress=progress), spec, test


def open_pool(cfg: PretrainConfig, out: Path, part: DistContext,
               progress: bool) -> tuple[Prepared | ShardedPool | TextPool | DecodedPool,
                                        ImageSpec | TokenSpec | ClipSpec | VolumeSpec, Collection | TextPool | None]:
    """The training pool (decoded, streamed, or sharded tar files; tokenized texts; decoded clips or
    volumes), its image sizes (or token, clip or volume settings) and any test set."""
    modality = METHODS.get(cfg.method).modality
    if modality in ("video", "volume"):
        return _open_decoded_pool(cfg, out, part, modality, progress)
    if is_video_source(cfg.data):
        video_methods = ", ".join(n for n in METHODS.names() if METHODS.get(n).modality == "video")
        raise ConfigError(f"{cfg.data} holds videos and {cfg.method} is not a video method (video methods: {video_methods})")
    if modality == "text":
        if not is_text_source(cfg.data):
            raise ConfigError(f"{cfg.method} is a text method: --data must be a .txt, .tsv or .csv file or a folder "
                              f"of .txt files, not {cfg.data}")
        return _open_text_pool(cfg, out, part)
    if is_text_source(cfg.data):
        text_methods = ", ".join(n for n in METHODS.names() if METHODS.get(n).modality == "text")
        raise ConfigError(f"{cfg.data} is text and {cfg.method} works on images (text methods: {text_methods})")
    if is_shard_spec(cfg.data):
        if METHODS.get(cfg.method).plan_epoch is not Method.plan_epoch:
            raise ConfigError(f"{cfg.method} plans each epoch over the whole pool, which needs random access; "
                              "sharded data is streamed: use a folder, archive or array file")
        pool = ShardedPool(cfg.data, strict=cfg.strict)
        pool.spec = spec_from_shape(pool.first_shape(), cfg.image_size)
        log.info("streaming %s", pool.describe())
        return pool, pool.spec, None
    train = segmentation_pool(cfg.data)  # images/ + masks/: its training and unlabeled images, no mask, no test
    dense_source, test = train is not None, None
    if train is None:
        train, test = train_test(cfg.data, cfg.test, out) if part.is_main else (None, None)
        barrier()  # rank 0 saved any split first; the others read it
        if not part.is_main:
            train, test = train_test(cfg.data, cfg.test, out)
    spec = probe_spec(train, cfg.image_size)
    crops_per_image = None
    native = _native_side(train)
    if native and native >= 2 * spec.image_size and (cfg.image_size or dense_source):
        train, crops_per_image = native_crops(train, spec.channels, spec.image_size, cfg.strict)
        spec = ImageSpec(spec.channels, spec.image_size, spec.image_size)
        log.info("%d-px crops at native resolution: %d items, %.1f per image", spec.image_size, len(train), crops_per_image)
    pool = Prepared(train, spec, strict=cfg.strict, progress=progress)
    pool.crops_per_image = crops_per_image
    return pool, spec, test


def _native_side(collection: Collection) -> int | None:
    """The shorter side of the first readable image (None when none reads)."""
    if collection.array is not None:
        return int(min(collection.array.shape[-2:]))
    for key in collection.keys[:20]:
        try:
            return int(min(decode_bytes(collection.reader.read(key)).shape[-2:]))  # type: ignore[union-attr]
        except (DecodeError, OSError, KeyError, RuntimeError):
            continue
    return None
