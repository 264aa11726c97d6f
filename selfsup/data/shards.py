"""Sharded tar pools (WebDataset's format), streamed: pools larger than the machine's disk or memory.

A shard is a plain tar file whose members group into samples by key: ``part/000123.jpg`` and
``part/000123.cls`` are one sample, key ``part/000123`` (the path up to the first dot of the file
name), as WebDataset writes them. ``--data`` names the shards as

- a brace pattern: ``pool-{000000..000099}.tar`` (ranges keep their zero padding; ``{a,b}`` lists),
- a folder holding only ``.tar`` files,
- URLs or commands: ``https://host/pool-{0000..0099}.tar``, ``pipe:aws s3 cp s3://b/pool-0001.tar -``,
- a JSON index (WebDataset's ``wids`` format): ``{"shardlist": [{"url": ..., "nsamples": ...}]}``.

Shards are read front to back as byte streams, never extracted and never seeked, so they may live
behind HTTP or a pipe. Sample counts come from the index, or from reading local shards' tar headers
once (remote shards need an index: counting them would download them).

Epoch e puts the shards in an order fixed by (seed, e); rank r of R takes shards r, r+R, ...;
DataLoader worker w of W takes its rank's shards w, w+W, ... and makes that rank's batches w, w+W, ...
of the epoch through a shuffle buffer seeded by (seed, e, r, w). Every batch of every rank is thus
fixed by the seed, a resumed run reads (without decoding) up to where it stopped, and each rank
yields exactly steps-per-epoch batches (a share that runs out starts its shards again).
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np
import torch

from ..utils.errors import SelfSupError
from .decode import DecodeError, decode_bytes, fit_square, match_channels, reason
from .images import ReportsBadItems

log = logging.getLogger("selfsup")

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp")
_BRACES = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """``a-{000..002}.tar`` -> a-000.tar, a-001.tar, a-002.tar; ``{x,y}`` -> x, y; nested left to right."""
    match = _BRACES.search(pattern)
    if not match:
        return [pattern]
    body = match.group(1)
    bounds = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if bounds:
        lo, hi = bounds.groups()
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        choices = body.split(",")
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [expanded for choice in choices for expanded in expand_braces(head + choice + tail)]


def is_shard_spec(spec: str) -> bool:
    """Does a --data value name shards (rather than one folder, archive or array)?"""
    if spec.startswith("pipe:") or (spec.startswith(("http://", "https://")) and ".tar" in spec):
        return True
    if _BRACES.search(spec) and ".tar" in spec:
        return True
    path = Path(spec).expanduser()
    if path.suffix == ".json" and path.is_file():
        return True
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        return bool(files) and all(p.name.endswith(".tar") for p in files)
    return False


def open_shard(url: str) -> IO[bytes]:
    """A readable byte stream of one shard: a local path, an http(s) URL or ``pipe:COMMAND``."""
    try:
        if url.startswith("pipe:"):
            process = subprocess.Popen(url[5:], shell=True, stdout=subprocess.PIPE)
            assert process.stdout is not None
            return process.stdout
        if url.startswith(("http://", "https://")):
            return urllib.request.urlopen(url, timeout=60)
        return open(Path(url).expanduser(), "rb")
    except OSError as exc:
        raise SelfSupError(f"cannot open shard {url}: {reason(exc)}") from None


def member_key(name: str) -> tuple[str, str] | None:
    """(sample key, lower-case extension) of a tar member, as WebDataset groups them: the path up to
    the first dot of the file name; None for names without one and macOS ``._`` resource forks."""
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    if not dot or stem.startswith("._"):
        return None
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def samples(stream: IO[bytes], url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of a tar stream, in the order it was written."""
    key, fields = None, {}
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                parsed = member_key(member.name) if member.isfile() else None
                if parsed is None:
                    continue
                this, extension = parsed
                if this != key and key is not None:
                    yield key, fields
                    fields = {}
                key = this
                handle = tar.extractfile(member)
                fields[extension] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SelfSupError(f"corrupt or truncated shard {url}: {reason(exc)}") from None
    finally:
        stream.close()
    if key is not None:
        yield key, fields


def image_field(fields: dict[str, bytes]) -> bytes | None:
    return next((fields[e] for e in IMAGE_EXTENSIONS if e in fields), None)


@dataclass(frozen=True)
class Shard:
    url: str
    samples: int
    first: int  # the pool index of its first sample (memory banks keep one row per image)


def _count_local(url: str) -> int:
    """Samples with an image in a local shard, from its tar headers (data is skipped, not read)."""
    path = Path(url).expanduser()
    try:
        size = path.stat().st_size
        with tarfile.open(path) as tar:
            keys = set()
            for member in tar:
                if member.offset_data + member.size > size:
                    raise SelfSupError(f"truncated shard {url}: {member.name} ends past the end of the file")
                parsed = member_key(member.name) if member.isfile() else None
                if parsed is not None and parsed[1] in IMAGE_EXTENSIONS:
                    keys.add(parsed[0])
            return len(keys)
    except (tarfile.TarError, OSError) as exc:
        raise SelfSupError(f"cannot read shard {url}: {reason(exc)}") from None


def list_shards(spec: str) -> list[Shard]:
    """The shards a --data value names, with their sample counts and first pool indices."""
    path = Path(spec).expanduser()
    if path.suffix == ".json" and path.is_file():
        try:
            entries = json.loads(path.read_text())["shardlist"]
            pairs = [(e["url"], int(e["nsamples"])) for e in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise SelfSupError(f"{spec}: not a shard index ({{'shardlist': [{{'url', 'nsamples'}}]}}): {exc}") from None
        base = path.parent
        pairs = [(u if re.match(r"^(https?://|pipe:|/)", u) else str(base / u), n) for u, n in pairs]
    else:
        urls = sorted(str(p) for p in path.iterdir() if p.name.endswith(".tar")) if path.is_dir() else expand_braces(spec)
        remote = [u for u in urls if u.startswith(("http://", "https://", "pipe:"))]
        if remote:
            raise SelfSupError(f"remote shards ({remote[0]} ...) need an index with their sample counts: pass a JSON "
                               "file {'shardlist': [{'url': ..., 'nsamples': ...}, ...]} as --data")
        missing = [u for u in urls if not Path(u).expanduser().is_file()]
        if missing:
            raise SelfSupError(f"shard not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        pairs = [(u, _count_local(u)) for u in urls]
    starts = np.concatenate([[0], np.cumsum([n for _, n in pairs])])
    shards = [Shard(u, n, int(s)) for (u, n), s in zip(pairs, starts)]
    if not shards or starts[-1] == 0:
        raise SelfSupError(f"{spec}: the shards hold no images")
    return shards


class ShardedPool(ReportsBadItems):
    """The unlabeled pool of a sharded dataset, fed to the engine as batches of uint8 images.

    Offers what the engine needs of a pool: ``len`` (samples), ``head(n)`` (the first decoded
    images: normalization statistics, --show-batch) and ``epoch_batches`` (one epoch of one rank).
    It has no random access, so methods that plan their epoch's order (DeepCluster) and the
    end-of-run kNN monitor (which needs labels) do not run on it.
    """

    array = None
    stream = None
    labels = None
    skipped = 0

    def __init__(self, spec: str, strict: bool = False, shuffle_buffer: int = 2000) -> None:
        self.source, self.strict, self.shuffle_buffer = spec, strict, shuffle_buffer
        self.shards = list_shards(spec)
        self.spec = None  # ImageSpec, set by the caller once the first image is probed
        self.reported: set[str] = set()

    def __len__(self) -> int:
        return self.shards[-1].first + self.shards[-1].samples

    def describe(self) -> str:
        return f"{len(self.shards)} shards of {self.source} ({len(self)} images)"

    def first_shape(self) -> tuple[int, int, int]:
        """C x H x W of the first decodable image (sizes are decided from it)."""
        for shard in self.shards[:3]:
            for _, fields in samples(open_shard(shard.url), shard.url):
                data = image_field(fields)
                try:
                    if data is not None:
                        return tuple(decode_bytes(data).shape)  # type: ignore[return-value]
                except DecodeError:
                    continue
        raise SelfSupError(f"no decodable image in the first shards of {self.source}")

    def _decode(self, key: str, data: bytes | None) -> torch.Tensor | tuple[str, str]:
        if data is None:
            return key, "no image in the sample"
        try:
            image = decode_bytes(data, self.spec.channels)
            return fit_square(match_channels(image, self.spec.channels), self.spec.load_size)
        except (DecodeError, RuntimeError) as exc:
            return key, reason(exc)

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` decodable images in shard order."""
        images = []
        for shard in self.shards:
            for key, fields in samples(open_shard(shard.url), shard.url):
                image = self._decode(key, image_field(fields))
                if isinstance(image, torch.Tensor):
                    images.append(image)
                    if len(images) == n:
                        return torch.stack(images)
        return torch.stack(images)

    def epoch_batches(self, epoch: int, seed: int, batch: int, steps: int, first_step: int, rank: int, world: int,
                      workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(pool indices, uint8 images) of this rank's batches ``first_step``..``steps``-1 of ``epoch``;
        ``batch`` is the rank's share of the global batch."""
        from ..utils.runtime import step_generator

        order = torch.randperm(len(self.shards), generator=step_generator(seed, 5, epoch)).tolist()
        mine = [self.shards[i] for i in order[rank::world]]
        if not mine:
            raise SelfSupError(f"{len(self.shards)} shards cannot feed {world} processes: give at least one shard each")
        workers = max(1, min(workers, len(mine)))
        stream = _RankEpoch(self, mine, epoch, seed, batch, steps, first_step, rank, workers)
        if workers == 1 and not torch.utils.data.get_worker_info():
            items: Iterator = stream.worker_batches(0)
        else:
            items = iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                                     collate_fn=_as_is, pin_memory=torch.cuda.is_available()))
        pending, next_step = {}, first_step
        for step, indices, images, bad in items:  # workers' batches, put back in step order
            pending[step] = (indices, images, bad)
            while next_step in pending:
                indices, images, bad = pending.pop(next_step)
                self.report_bad(bad)
                yield indices, images
                next_step += 1


def _as_is(item):
    return item


class _RankEpoch(torch.utils.data.IterableDataset):
    """One rank's epoch: worker w streams shards w, w+W, ... and makes batches w, w+W, ..., each
    tagged with its step (a resumed epoch's first batch may come from any worker)."""

    def __init__(self, pool: ShardedPool, shards: list[Shard], epoch: int, seed: int, batch: int, steps: int,
                 first_step: int, rank: int, workers: int) -> None:
        self.pool, self.shards, self.epoch, self.seed = pool, shards, epoch, seed
        self.batch, self.steps, self.first_step, self.rank, self.workers = batch, steps, first_step, rank, workers

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        return self.worker_batches(info.id if info else 0)

    def _stream(self, worker: int) -> Iterator[tuple[int, str, bytes | None] | None]:
        """(pool index, key, image bytes) from this worker's shards; None ends each pass over them."""
        shards = self.shards[worker::self.workers]
        while True:
            for shard in shards:
                for position, (key, fields) in enumerate(samples(open_shard(shard.url), shard.url)):
                    if position < shard.samples:
                        yield shard.first + position, key, image_field(fields)
            yield None

    def worker_batches(self, worker: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, list[tuple[str, str]]]]:
        from ..utils.runtime import step_generator

        generator = step_generator(self.seed, 6, self.epoch, self.rank, worker)
        source, buffer = self._stream(worker), []
        size = max(self.pool.shuffle_buffer, self.batch)
        pass_read = False

        def draw() -> tuple[int, str, bytes | None]:
            """A random sample of the buffer; a pass is drained before the next one starts, so a
            share read once per epoch gives every sample once."""
            nonlocal pass_read
            while True:
                while not pass_read and len(buffer) < size:
                    item = next(source)
                    if item is None:
                        pass_read = True
                    else:
                        buffer.append(item)
                if buffer:
                    break
                pass_read = False
            j = int(torch.randint(len(buffer), (1,), generator=generator))
            buffer[j], buffer[-1] = buffer[-1], buffer[j]
            return buffer.pop()

        for step in range(worker, self.steps, self.workers):
            if step < self.first_step:  # resuming: read past the batches already trained on
                for _ in range(self.batch):
                    draw()
                continue
            indices, images, bad = [], [], []
            while len(images) < self.batch:
                index, key, data = draw()
                image = self.pool._decode(key, data)
                if isinstance(image, torch.Tensor):
                    indices.append(index)
                    images.append(image)
                else:
                    bad.append(image)
            yield step, torch.tensor(indices), torch.stack(images), bad


__all__ = ["ShardedPool", "Shard", "expand_braces", "is_shard_spec", "list_shards", "open_shard", "samples"]
