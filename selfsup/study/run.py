"""``selfsup study``: what self-supervision buys on the user's own data, in one command.

For each method: pretrain on the unlabeled pool (or reuse a checkpoint), cache its frozen
features of the labeled and test sets once, then for every label budget and seed score

- ``scratch``: the same architecture trained from random weights on the labeled subset,
- ``finetune``: the pretrained encoder fine-tuned on it (same steps, same learning-rate grid,
  the rate picked on a validation part of the subset, as in ``selfsup finetune``),
- ``linear``: an L-BFGS linear probe on the cached features (L2 strength by cross-validation
  inside the subset when it has 2+ examples per class, a stated default below),
- ``knn``: weighted kNN on the cached features,

all on the same class-balanced subsets (fixed by seed, saved to OUT/subsets/), scored on a test
set that no step trains or tunes on (the source's test/, --test, or a stratified 20% made and
saved once to OUT/splits.json). At "all" labels one seed is run. Scratch is trained once per
architecture, not once per method. Every finished evaluation is appended to
OUT/results.jsonl, so a study interrupted and re-run skips what it already finished.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from ..backbones import Backbone
from ..backbones.io import build_like
from ..backbones.text import TextBackboneSpec
from ..backbones.io import load_backbone
from ..backbones.pretrained import imagenet_normalization, load_initial_weights, published_weights
from ..backbones.registry import BackboneSpec
from ..config import PretrainConfig, SemisupConfig, StudyConfig, build_config, save_yaml, to_dict
from ..data.images import ImageSpec, Prepared
from ..data.decoded import decoded_pool, pool_spec
from ..data.splits import labeled_subset, parse_labels_per_class, save_subset, stratified_split, train_test
from ..utils.checkpoint import atomic_save_tensors, atomic_write_text
from ..utils.runtime import clear, resolve_device, run_files, seed_everything
from ..utils.errors import ConfigError, SelfSupError
from ..evaluate.diagnostics import feature_diagnostics
from ..backbones.features import extract_features
from ..evaluate.finetune import Downstream, finetuned_accuracy, lr_grid_for
from ..utils.knn import knn_predict, topk_accuracy
from ..evaluate.linear import linear_probe
from ..methods import METHODS
from ..semisup.methods import SEMISUP_METHODS
from ..semisup.train import semisup_accuracy, unlabeled_pool
from ..views import Normalization
from .plots import plot_embedding_maps, plot_label_efficiency, source_name, tsne_2d
from .report import environment, write_report
from .results import EVALUATIONS, ResultLog, budget_name, summarize, write_tables

log = logging.getLogger("selfsup")


@dataclass
class Encoder:
    """A pretrained checkpoint under study, with everything its evaluations share."""

    name: str
    path: str
    backbone: Backbone
    info: dict[str, Any]
    scratch: str = "scratch"  # the name of the from-scratch curve of its architecture
    train_features: torch.Tensor | None = None
    train_rows: np.ndarray | None = None  # labeled index -> row of train_features (-1: unreadable)
    test_features: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None

    @property
    def text(self) -> bool:
        return self.info.get("modality") == "text"

    @property
    def image_spec(self) -> Any:
        """How its labeled data is decoded: image sizes, or a clip or volume encoder's settings."""
        return pool_spec(self.info) or ImageSpec.of_encoder(self.info)

    @property
    def normalization(self) -> Normalization | None:
        return None if self.text else Normalization(**self.info["normalization"])

    @property
    def image_size(self) -> int:
        return 0 if self.text else self.info["image_size"]

    @property
    def spec(self) -> BackboneSpec | TextBackboneSpec:
        return (TextBackboneSpec if self.text else BackboneSpec)(**self.info["backbone"])

    @property
    def architecture(self) -> str:
        return json.dumps([self.info["backbone"], self.info.get("image_size")], sort_keys=True)


@dataclass
class SemisupEntry:
    """A semi-supervised row of the study: ``uda`` / ``fixmatch`` from random weights of ``encoder``'s
    architecture, or ``NAME+fixmatch`` from checkpoint NAME's weights."""

    name: str
    method: str
    encoder: Encoder
    pretrained: bool

    @property
    def info(self) -> dict[str, Any]:
        return self.encoder.info

    @property
    def scratch(self) -> str:
        return self.encoder.scratch


def _semisup_entries(entries: list[str], names: list[str]) -> list[tuple[str, str, str | None]]:
    """(entry, semi-supervised method, base checkpoint name or None) for each semi-supervised entry."""
    out = []
    for entry in entries:
        base, _, method = entry.rpartition("+")
        if method not in SEMISUP_METHODS:
            raise ConfigError(f"--methods: {entry}: {method} is not a semi-supervised method "
                              f"({', '.join(SEMISUP_METHODS)})")
        if base and base not in names:
            raise ConfigError(f"--methods: {entry}: {base} is neither pretrained in this study nor given as --checkpoint")
        out.append((entry, method, base or None))
    return out


def _names(text: str) -> list[str]:
    return [n.strip() for n in str(text or "").split(",") if n.strip()]


def checkpoint_name(path: str) -> str:
    """The method that made a run folder or encoder file (its config.yaml), else the folder's name."""
    import yaml

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    try:
        return str(yaml.safe_load((folder / "config.yaml").read_text())["method"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return folder.name if p.is_dir() else p.stem


def _guard_out(out: Path, cfg: StudyConfig) -> None:
    """A re-run continues the study in OUT; other data there is refused (or replaced with --overwrite)."""
    identity = {"data": cfg.data, "labeled": cfg.labeled or cfg.data, "test": cfg.test}
    record = out / "study.json"
    if run_files(out):
        if cfg.overwrite:
            clear(out)
        elif not record.exists():
            raise ConfigError(f"output folder {out} is not empty and holds no study: pass --overwrite to replace it")
        elif json.loads(record.read_text()) != identity:
            raise ConfigError(f"{out} holds a study of other data ({record.read_text().strip()}): "
                              "pass another --out, or --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps(identity))


def _pretrained(name: str, cfg: StudyConfig, out: Path, progress: bool, timings: dict[str, float]) -> str:
    """Pretrain ``name`` into OUT/pretrain/NAME, resuming a killed run, reusing a finished one."""
    run = out / "pretrain" / name
    if (run / "result.json").exists() and (run / "encoder.safetensors").exists():
        return str(run)
    if not cfg.data:
        raise ConfigError(f"pretraining {name} needs --data (the unlabeled pool), or pass --checkpoint {name}=PATH")
    values = {"method": name, "data": cfg.data, "test": cfg.test, "image_size": cfg.image_size,
              "num_workers": cfg.num_workers, "strict": cfg.strict, "device": cfg.device, "seed": cfg.seed,
              **{k: v for k, v in (("backbone", cfg.backbone), ("steps", cfg.pretrain_steps),
                                   ("epochs", cfg.pretrain_epochs), ("batch_size", cfg.pretrain_batch_size)) if v is not None},
              **cfg.pretrain,
              **(cfg.per_method.get(name) or {})}
    resume = (run / "config.yaml").exists() and (run / "checkpoints").exists()
    flags = {"out": str(run), "resume": resume, "overwrite": not resume}
    pre_cfg = build_config(PretrainConfig, values, flags)
    from ..engine.trainer import pretrain

    started = time.perf_counter()
    log.info("study: %s %s on %s", "resuming the pretraining of" if resume else "pretraining", name, cfg.data)
    result = pretrain(pre_cfg, progress=progress)
    timings[f"pretrain {name}"] = timings.get(f"pretrain {name}", 0.0) + time.perf_counter() - started
    if result.get("collapse_warning"):
        log.warning("study: %s collapsed during pretraining (see %s/metrics.csv)", name, run)
    return str(run)


def _cached_features(enc: Encoder, train: Prepared, test: Prepared, out: Path, device: torch.device,
                     timings: dict[str, float], progress: bool) -> None:
    """Frozen features of every labeled and test image, computed once per checkpoint and kept in OUT/features/."""
    path = out / "features" / f"{enc.name}.safetensors"
    source = Path(enc.path)
    weights = source / "encoder.safetensors" if source.is_dir() else source
    stamp = f"{weights.resolve()}:{weights.stat().st_mtime_ns if weights.exists() else 0}"
    tensors = None
    if path.exists():
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                if (f.metadata() or {}).get("source") == stamp:
                    tensors = load_file(str(path))
        except Exception:  # a torn cache file is recomputed, never trusted
            tensors = None
    if tensors is None:
        started = time.perf_counter()
        bar = f"features of {enc.name}" if progress else None
        train_x, train_pos = extract_features(enc.backbone, train, enc.normalization, enc.image_size, device,
                                              progress=bar and f"{bar}: labeled")
        test_x, test_pos = extract_features(enc.backbone, test, enc.normalization, enc.image_size, device,
                                            progress=bar and f"{bar}: test")
        timings[f"features {enc.name}"] = time.perf_counter() - started
        tensors = {"train": train_x, "train_pos": torch.from_numpy(train_pos),
                   "test": test_x, "test_pos": torch.from_numpy(test_pos)}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_tensors(tensors, path, metadata={"source": stamp})
    rows = np.full(len(train), -1, dtype=np.int64)
    rows[tensors["train_pos"].numpy()] = np.arange(len(tensors["train_pos"]))
    enc.train_features, enc.train_rows = tensors["train"], rows
    enc.test_features = tensors["test"]
    enc.test_labels = torch.from_numpy(np.asarray(test.labels)[tensors["test_pos"].numpy()])


def _frozen_score(enc: Encoder, evaluation: str, subset: np.ndarray, labels: np.ndarray, num_classes: int,
                  seed: int, cfg: StudyConfig) -> tuple[float, Any]:
    rows = enc.train_rows[subset]
    keep = rows >= 0
    feats, sub_labels = enc.train_features[rows[keep]], torch.from_numpy(labels[subset[keep]])
    if evaluation == "linear":
        scores, chosen = linear_probe(feats, sub_labels, enc.test_features, num_classes, seed)
    else:
        scores = knn_predict(feats, sub_labels, enc.test_features, num_classes, k=cfg.knn_k,
                             temperature=cfg.knn_temperature)
        chosen = min(cfg.knn_k, len(sub_labels))
    return topk_accuracy(scores, enc.test_labels, (1,))[1], chosen


@dataclass
class Plan:
    """What a study's config asks for, checked before any work: the encoders' names, the semi-supervised
    rows, the evaluations and the label budgets."""

    names: list[str]
    checkpoints: dict[str, str]
    semisup_specs: list[tuple[str, str, str | None]]
    evaluations: list[str]
    baselines: list[str]  # beyond scratch: "imagenet" or weights files, each fine-tuned like scratch
    budgets: list[int | None]
    semisup_budgets: list[int | None]
    labeled: str


@dataclass
class Study:
    """A study as it runs: its config and folder, timings, the encoders and the labeled data."""

    cfg: StudyConfig
    out: Path
    device: torch.device
    progress: bool
    timings: dict[str, float]
    encoders: list[Encoder] = field(default_factory=list)
    semisup: list[SemisupEntry] = field(default_factory=list)
    text: bool = False
    train_c: Any = None  # the labeled collection (texts: a TextCollection)
    test_c: Any = None
    train_of: dict[str, tuple[Prepared, Prepared]] = field(default_factory=dict)  # method -> (labeled, test)
    groups: np.ndarray | None = None
    random_features: dict[str, torch.Tensor] = field(default_factory=dict)  # architecture -> test features

    def save_timings(self) -> None:
        atomic_write_text(self.out / "timings.json", json.dumps(self.timings, indent=1))


def run_study(cfg: StudyConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or continue) the study in ``cfg.out``; returns what results.json holds, plus paths."""
    started = time.perf_counter()
    plan = _plan(cfg)
    check_baselines(cfg, plan.baselines, plan.names, plan.checkpoints)
    out = Path(cfg.out)
    _guard_out(out, cfg)
    save_yaml(to_dict(cfg), out / "config.yaml")
    timings_path = out / "timings.json"
    study = Study(cfg, out, resolve_device(cfg.device), progress,
                  json.loads(timings_path.read_text()) if timings_path.exists() else {})
    _encoders(study, plan)  # 1. pretrained here (resumable) or given
    _labeled_sets(study, plan.labeled)  # 2. decoded once per image format (texts: tokenized per tokenizer)
    diagnostics = _features_and_diagnostics(study)  # 3. cached per checkpoint, and for random weights
    rows = _evaluate(study, plan)  # 4. every (budget, seed): the same subset for every method
    return _report(study, plan, rows, diagnostics, started)  # 5. tables, figures, report


def _plan(cfg: StudyConfig) -> Plan:
    """The study's methods, checkpoints, evaluations and budgets, each checked."""
    checkpoints = {str(k): str(v) for k, v in (cfg.checkpoints or {}).items()}
    listed = _names(cfg.methods)
    semisup_listed = [n for n in listed if n in SEMISUP_METHODS or "+" in n]
    listed = [n for n in listed if n not in semisup_listed]
    names = listed + [n for n in checkpoints if n not in listed]
    if not names:
        raise ConfigError("study needs --methods or --checkpoint NAME=PATH" + (
            " (semi-supervised rows train the architecture of a pretrained method or checkpoint: add one)"
            if semisup_listed else ""))
    semisup_specs = _semisup_entries(semisup_listed, names)
    for name in names:
        if name not in checkpoints:
            METHODS.get(name)
    evaluations = _names(cfg.evaluations)
    unknown = [e for e in evaluations if e not in EVALUATIONS]
    if unknown or not evaluations:
        raise ConfigError(f"--evaluations: unknown {', '.join(unknown) or '(none given)'} "
                          f"(choose from {', '.join(EVALUATIONS)})")
    baselines = _names(cfg.baselines)
    if "scratch" not in baselines:
        evaluations = [e for e in evaluations if e != "scratch"]
    baselines = [b for b in baselines if b != "scratch"]
    for baseline in baselines:
        if baseline != "imagenet" and not Path(baseline).is_file():
            raise ConfigError(f"--baselines: {baseline!r} is neither scratch, imagenet nor a weights file")
    budgets = parse_labels_per_class(cfg.labels_per_class)
    if not budgets:
        raise ConfigError("--labels-per-class: give at least one budget, e.g. 1,10,all")
    semisup_budgets = budgets if cfg.semisup_labels_per_class is None else \
        parse_labels_per_class(str(cfg.semisup_labels_per_class))
    if semisup_specs and not set(semisup_budgets) <= set(budgets):
        raise ConfigError(f"semisup_labels_per_class {cfg.semisup_labels_per_class} is not among the study's "
                          f"budgets {cfg.labels_per_class}")
    labeled = cfg.labeled or cfg.data
    if not labeled:
        raise ConfigError("study needs --labeled (or a labeled --data)")
    return Plan(names, checkpoints, semisup_specs, evaluations, baselines, budgets, semisup_budgets, labeled)


def _encoders(study: Study, plan: Plan) -> None:
    """Each method's encoder, pretrained into OUT/pretrain/NAME or given, and the semi-supervised rows."""
    for name in plan.names:
        path = plan.checkpoints.get(name) or _pretrained(name, study.cfg, study.out, study.progress, study.timings)
        study.save_timings()
        backbone, info = load_backbone(path)
        study.encoders.append(Encoder(name, path, backbone.to(study.device), info))
    encoders = study.encoders
    by_name = {e.name: e for e in encoders}
    study.semisup = [SemisupEntry(entry, method, by_name[base] if base else encoders[0], base is not None)
                     for entry, method, base in plan.semisup_specs]
    if len({e.architecture for e in encoders}) > 1:
        for enc in encoders:
            enc.scratch = f"scratch ({enc.info['backbone']['name']})"


def _labeled_sets(study: Study, labeled: str) -> None:
    """The labeled and test sets of one modality, decoded once per image format each encoder reads."""
    cfg = study.cfg
    modalities = {e.info.get("modality", "image") for e in study.encoders}
    if len(modalities) > 1:
        raise ConfigError(f"a study compares encoders of one modality: these mix {' and '.join(sorted(modalities))} checkpoints")
    modality = modalities.pop()
    study.text = modality == "text"
    if modality != "image" and study.semisup:
        raise ConfigError(f"semi-supervised rows (uda, fixmatch) train on images; a {modality} study cannot have them")
    if study.text:
        study.train_c, study.test_c, study.train_of, study.groups = _text_sets(study.encoders, labeled, cfg)
        return
    study.train_c, study.test_c = train_test(labeled, cfg.test, study.out, kind=modality)
    pool_class = decoded_pool if modality in ("video", "volume") else Prepared
    if study.test_c is None or not study.train_c.has_labels or not study.test_c.has_labels:
        raise ConfigError(f"{labeled} carries no labels to study with; pass a labeled --labeled (and --test)")
    prepared: dict[str, tuple[Prepared, Prepared]] = {}
    for enc in study.encoders:
        key = json.dumps(asdict(enc.image_spec), sort_keys=True)
        if key not in prepared:
            prepared[key] = (pool_class(study.train_c, enc.image_spec, strict=cfg.strict, progress=study.progress),
                             pool_class(study.test_c, enc.image_spec, strict=cfg.strict, progress=study.progress))
        study.train_of[enc.name] = prepared[key]


def _features_and_diagnostics(study: Study) -> dict[str, dict[str, float]]:
    """Frozen features of every encoder (cached) and of random weights of each architecture, and the
    diagnostics of both (kept in OUT/diagnostics.json)."""
    cfg, device = study.cfg, study.device
    diag_path = study.out / "diagnostics.json"
    diagnostics: dict[str, dict[str, float]] = json.loads(diag_path.read_text()) if diag_path.exists() else {}
    for enc in study.encoders:
        train, test = study.train_of[enc.name]
        _cached_features(enc, train, test, study.out, device, study.timings, study.progress)
        if enc.name not in diagnostics:
            diagnostics[enc.name] = feature_diagnostics(enc.backbone, enc.test_features, test, enc.normalization,
                                                        enc.image_size, device, seed=cfg.seed)
        random_name = f"random weights ({enc.info['backbone']['name']})"
        if enc.architecture not in study.random_features:
            seed_everything(cfg.seed)
            random_backbone = build_like(enc.spec, enc.image_size).to(device)
            feats, _ = extract_features(random_backbone, test, enc.normalization, enc.image_size, device)
            study.random_features[enc.architecture] = feats
            if random_name not in diagnostics:
                diagnostics[random_name] = feature_diagnostics(random_backbone, feats, test, enc.normalization,
                                                               enc.image_size, device, seed=cfg.seed)
        atomic_write_text(diag_path, json.dumps(diagnostics, indent=1))
        study.save_timings()
    return diagnostics


def _units(study: Study, plan: Plan) -> list[tuple[Any, str, int | None, int]]:
    """Every (encoder or row, evaluation, budget, seed) of the study; scratch once per architecture."""
    units = []
    for per_class in plan.budgets:
        for seed in range(1 if per_class is None else study.cfg.seeds):
            references = (["scratch"] if "scratch" in plan.evaluations else []) + [f"baseline:{b}" for b in plan.baselines]
            for reference in references:
                done_arch = set()
                for enc in study.encoders:
                    if enc.architecture not in done_arch:
                        done_arch.add(enc.architecture)
                        units.append((enc, reference, per_class, seed))
            units += [(enc, e, per_class, seed) for enc in study.encoders for e in plan.evaluations if e != "scratch"]
            if per_class in plan.semisup_budgets:
                units += [(entry, "semisup", per_class, seed) for entry in study.semisup]
    return units


def _evaluate(study: Study, plan: Plan) -> list[dict[str, Any]]:
    """Every unit not yet in OUT/results.jsonl, each on the subset of its (budget, seed); all rows."""
    cfg, out = study.cfg, study.out
    results = ResultLog(out / "results.jsonl")
    labels = np.asarray(study.train_c.labels)
    num_classes = max(study.train_c.num_classes, int(labels.max()) + 1)
    if num_classes < 2:
        raise SelfSupError("the labeled set needs at least two classes")
    units = _units(study, plan)
    todo = [u for u in units if (*row_name(study.encoders, u[0], u[1]), budget_name(u[2]), u[3]) not in results]
    bar = tqdm(total=len(units), initial=len(units) - len(todo), desc="study", file=sys.stderr,
               disable=not study.progress)
    pool: Prepared | None = None  # the unlabeled images of the semi-supervised rows, decoded when first needed
    for enc, evaluation, per_class, seed in todo:
        subset = labeled_subset(labels, seed, per_class=per_class, groups=study.groups)
        save_subset(out, f"{budget_name(per_class)}-seed{seed}", [study.train_c.keys[i] for i in subset])
        t0 = time.perf_counter()
        if evaluation in ("linear", "knn"):
            acc, chosen = _frozen_score(enc, evaluation, subset, labels, num_classes, seed, cfg)
        elif evaluation == "semisup":
            if pool is None:
                pool = unlabeled_pool(cfg.data, plan.labeled, study.train_of[enc.encoder.name][0], cfg.strict,
                                      study.progress)
            acc, chosen = _semisup(enc, subset, seed, cfg, study.train_of[enc.encoder.name], pool, num_classes,
                                   study.device)
        else:
            acc, chosen = _finetuned(enc, evaluation, subset, seed, cfg, study.train_of[enc.name], num_classes,
                                     study.device)
        method, row_evaluation = row_name(study.encoders, enc, evaluation)
        results.add({"method": method, "evaluation": row_evaluation,
                     "budget": budget_name(per_class), "labels_per_class": per_class if per_class is not None else "all",
                     "n_labels": int(len(subset)), "seed": seed, "accuracy": acc,
                     "seconds": round(time.perf_counter() - t0, 3), "chosen": chosen,
                     "backbone": enc.info["backbone"]["name"]})
        key = f"{evaluation} (all runs)"
        study.timings[key] = study.timings.get(key, 0.0) + time.perf_counter() - t0
        study.save_timings()
        bar.update(1)
    bar.close()
    return list(results.rows.values())


def _report(study: Study, plan: Plan, rows: list[dict[str, Any]], diagnostics: dict[str, dict[str, float]],
            started: float) -> dict[str, Any]:
    """results.csv/json, the label-efficiency plot, the embedding maps and report.html."""
    cfg, out = study.cfg, study.out
    t0 = time.perf_counter()
    maps, random_maps = {}, {}  # the methods first, then random weights of each architecture
    for enc in study.encoders:
        pick = _map_points(enc.test_labels.numpy(), cfg.map_points, cfg.seed)
        maps[enc.name] = (tsne_2d(enc.test_features[pick], cfg.seed), enc.test_labels.numpy()[pick])
        random_key = f"random weights ({enc.info['backbone']['name']})"
        if random_key not in random_maps:
            random_maps[random_key] = (tsne_2d(study.random_features[enc.architecture][pick], cfg.seed),
                                       enc.test_labels.numpy()[pick])
    maps.update(random_maps)
    plot_embedding_maps(maps, study.train_c.classes, out / "embedding_map.png")
    study.timings["embedding maps"] = time.perf_counter() - t0
    summary = summarize(rows)
    plot_label_efficiency(summary, out / "label_efficiency.png", f"{source_name(plan.labeled)}: test accuracy against labels")
    study.timings["study (this run)"] = time.perf_counter() - started
    study.save_timings()
    unit = "texts" if study.text else "images"
    extra = {"diagnostics": diagnostics, "timings": study.timings, "environment": environment(str(study.device)),
             "test_set": f"{study.test_c.name} ({len(study.test_c)} {unit})",
             "labeled_set": f"{study.train_c.name} ({len(study.train_c)} {unit})"}
    scratch_of = {e.name: e.scratch for e in [*study.encoders, *study.semisup]}
    scratch_of.update({row_name(study.encoders, e, f"baseline:{b}")[0]: e.scratch for e in study.encoders for b in plan.baselines})
    payload = write_tables(rows, out, extra, scratch_of)
    report = write_report(out, payload, summary, to_dict(cfg),
                          title=f"selfsup study: {', '.join(plan.names + [e.name for e in study.semisup])}")
    return {**payload, "out": str(out), "report": str(report), "seconds": round(time.perf_counter() - started, 3)}


def _finetuned(enc: Encoder, evaluation: str, subset: np.ndarray, seed: int, cfg: StudyConfig,
               data: tuple[Prepared, Prepared], num_classes: int, device: torch.device) -> tuple[float, float]:
    """Scratch, fine-tuned or a baseline's (published weights fine-tuned) test accuracy on ``subset``; the
    learning rate picked inside the subset."""
    image_size = enc.image_size
    normalization = enc.normalization
    if evaluation.startswith("baseline:"):  # published weights read the input they were trained on
        state = _baseline_weights(enc, evaluation.partition(":")[2])
        normalization = imagenet_normalization(enc.spec.in_channels)
    else:
        state = enc.backbone.state_dict()  # never trained here: every run loads (copies) it into a new backbone

    def make() -> Backbone:
        backbone = build_like(enc.spec, image_size)
        if evaluation != "scratch":
            backbone.load_state_dict(state)
        return backbone

    train, test = data
    ds = Downstream(train=train, test=test, num_classes=num_classes, normalization=normalization,
                    image_size=image_size, device=device, steps=cfg.finetune_steps, batch_size=cfg.finetune_batch_size,
                    weight_decay=cfg.finetune_weight_decay, lr_grid=lr_grid_for(cfg.lr_grid, enc.text),
                    val_fraction=cfg.val_fraction)
    return finetuned_accuracy(make, ds, subset, seed)


def row_name(encoders: list[Encoder], enc: Any, evaluation: str) -> tuple[str, str]:
    """The (method, evaluation) a unit's row is filed under: scratch and the baselines once per architecture
    (named after it when the study mixes architectures), a baseline as the fine-tuning of its weights."""
    if evaluation == "scratch":
        return enc.scratch, "scratch"
    if not evaluation.startswith("baseline:"):
        return enc.name, evaluation
    source = evaluation.partition(":")[2]
    name = "imagenet" if source == "imagenet" else f"weights {Path(source).stem}"
    if len({e.architecture for e in encoders}) > 1:
        name += f" ({enc.info['backbone']['name']})"
    return name, "finetune"


_BASELINE_STATES: dict[tuple, dict[str, torch.Tensor]] = {}


def _baseline_weights(enc: Encoder, source: str) -> dict[str, torch.Tensor]:
    """The encoder's architecture with ``source``'s weights (ImageNet's or a file's), loaded once."""
    if enc.text:
        raise ConfigError("--baselines imagenet and weights files apply to image studies")
    key = (enc.architecture, enc.image_size, source)
    if key not in _BASELINE_STATES:
        backbone = build_like(enc.spec, enc.image_size)
        load_initial_weights(backbone, source)
        _BASELINE_STATES[key] = backbone.state_dict()
    return _BASELINE_STATES[key]


def check_baselines(cfg: StudyConfig, baselines: list[str], names: list[str], checkpoints: dict[str, str]) -> None:
    """ImageNet weights of every pretrained method's backbone, fetched (or found cached) before any
    pretraining, so an offline study stops at once rather than after hours."""
    if "imagenet" in baselines:
        for name in {cfg.backbone or METHODS.get(n).recipe.backbone for n in names if n not in checkpoints}:
            published_weights(name)


def _semisup(entry: SemisupEntry, subset: np.ndarray, seed: int, cfg: StudyConfig, data: tuple[Prepared, Prepared],
             pool: Prepared, num_classes: int, device: torch.device) -> tuple[float, float]:
    """Test accuracy of UDA or FixMatch on ``subset`` and the pool, from random or pretrained weights."""
    enc = entry.encoder
    seed_everything(seed)
    backbone = build_like(enc.spec, enc.image_size)
    if entry.pretrained:
        backbone.load_state_dict(enc.backbone.state_dict())
    train, test = data
    acc = semisup_accuracy(SEMISUP_METHODS[entry.method](), backbone, train, pool, test, subset, enc.normalization,
                           num_classes, cfg.semisup_steps or cfg.finetune_steps,
                           cfg.semisup_batch_size or cfg.finetune_batch_size, seed, device)
    return acc, SemisupConfig.lr


def _text_sets(encoders: list[Encoder], labeled: str, cfg: StudyConfig):
    """A text study's labeled pool (deduplicated, 5+ words), test texts, each encoder's token pools
    (one per tokenizer) and the phrase groups that keep tiny subsets to distinct sentences."""
    from ..data.text import TextPool, labeled_text_sets, load_tokenizer, phrase_groups, token_spec_of, tokenizer_beside

    train_c, test_c = labeled_text_sets(labeled, cfg.test)
    pools: dict[str, tuple] = {}
    train_of = {}
    for enc in encoders:
        path = tokenizer_beside(enc.path, enc.info)
        spec = token_spec_of(enc.info)
        key = f"{path.read_text()}:{spec.max_length}"  # runs whose tokenizers are equal share their token pools
        if key not in pools:
            tokenizer = load_tokenizer(path)
            pools[key] = (TextPool(train_c, tokenizer, spec), TextPool(test_c, tokenizer, spec))
        train_of[enc.name] = pools[key]
    return train_c, test_c, train_of, phrase_groups(train_c.texts)


def _map_points(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A stratified sample of at most ``n`` test points for the t-SNE maps."""
    if len(labels) <= n:
        return np.arange(len(labels))
    _, pick = stratified_split(labels, n / len(labels), seed)
    return pick


__all__ = ["run_study", "checkpoint_name"]
