"""Registry-driven: every method gets the same checks, so a new method is covered automatically."""
import numpy as np
import pytest
import torch

from selfsup.methods.base import method_defaults
from selfsup.backbones import build_backbone
from selfsup.methods import METHODS, EpochContext, Method
from selfsup.views import Normalization, Views, eval_transform

NORM = Normalization([0.5] * 3, [0.25] * 3)
# The papers' 4096/65536-wide heads and long queues are shrunk so a smoke test takes seconds on a CPU.
SHRINK = {"num_prototypes": 32, "num_negatives": 64}
# text methods: test_text.py; adversarial ones (players taking turns, no single loss to fall): test_gan.py
IMAGE_METHODS = [n for n in METHODS.names() if METHODS.get(n).modality == "image" and not METHODS.get(n).players]


def make(name: str, images: torch.Tensor | None = None, **overrides):
    """The method with its recipe's arguments (shrunk); methods with an epoch plan get one on ``images``."""
    torch.manual_seed(0)
    cls = METHODS.get(name)
    backbone = build_backbone(cls.recipe.backbone, cls.input_channels or 3, "small", 16)
    views = Views.preset(cls.recipe.views, 16, NORM)
    args = {k: (64 if k.endswith("_dim") and v is not None else SHRINK.get(k, v)) for k, v in method_defaults(cls).items()}
    if "dataset_size" in args:
        args["dataset_size"] = 8
    method = cls(backbone, views, **{**args, **overrides})
    if cls.plan_epoch is not Method.plan_epoch:
        images = images if images is not None else batch_of(8)
        features = lambda: (backbone(eval_transform(images, 16, NORM)).detach(), np.arange(len(images)))  # noqa: E731
        method.plan_epoch(EpochContext(0, len(images), 0, torch.optim.SGD(method.parameters(), lr=0.1),
                                       torch.device("cpu"), features))
    return method


def call(method, images: torch.Tensor, seed: int = 0) -> dict:
    extra = {"indices": torch.arange(len(images))} if method.needs_indices else {}
    return method(images, torch.Generator().manual_seed(seed), **extra)


def batch_of(n: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)


@pytest.fixture
def batch():
    return batch_of(8)


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_forward_finite_and_every_parameter_gets_a_gradient(name, batch):
    method = make(name, batch)
    out = call(method, batch)
    loss = out["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert out["embedding"].shape[0] == len(batch)  # what the collapse watch reads
    loss.backward()
    missing = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    frozen = [n for n, p in method.named_parameters() if not p.requires_grad]
    assert all(n.startswith("target_") for n in frozen), frozen  # only momentum targets are frozen
    assert all(p.grad is None for p in method.parameters() if not p.requires_grad)


def assert_loss_falls(method: Method, batch: torch.Tensor, warmup: int = 0) -> None:
    # AdamW's step does not scale with the loss, whose magnitude differs tenfold between methods.
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3)
    losses = []
    for step in range(warmup + 10):
        loss = call(method, batch)["loss"]  # fixed views every step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.after_step(step, warmup + 10)
        losses.append(loss.item())
    losses = losses[warmup:]
    assert sum(losses[-3:]) / 3 < losses[0]


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_loss_falls_on_a_fixed_batch(name, batch):
    # A memory bank starts as random rows, easy negatives; as it fills with real embeddings
    # of these 8 images the loss first rises, so PIRL is judged after the bank has turned over.
    assert_loss_falls(make(name, batch), batch, warmup=12 if name == "pirl" else 0)


def test_pirl_infonce_variant_trains(batch):
    method = make("pirl", loss_type="infonce")
    loss = call(method, batch)["loss"]
    assert torch.isfinite(loss) and not hasattr(method.criterion, "partition")
    assert_loss_falls(method, batch, warmup=12)
    with pytest.raises(ValueError, match="loss_type"):
        make("pirl", loss_type="softmax")
    with pytest.raises(ValueError, match="partition"):  # NCE's option, refused rather than ignored
        make("pirl", loss_type="infonce", partition="first_batch")


@pytest.mark.parametrize("name", METHODS.names())
def test_method_is_documented(name):
    cls = METHODS.get(name)
    assert cls.paper and "https://" in (cls.__doc__ or "")  # a link to the paper (arXiv, or a DOI before arXiv)


def test_byol_target_follows_the_online_network_by_ema():
    from selfsup.methods.momentum import cosine_momentum

    method = make("byol")
    online = [p.detach().clone() for p in method.backbone.parameters()]
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    before = [p.detach().clone() for p in method.target_backbone.parameters()]
    method.after_step(0, 100)
    m = cosine_momentum(0, 100, 0.996)
    assert m == pytest.approx(0.996)
    for t, b, o in zip(method.target_backbone.parameters(), before, online):
        torch.testing.assert_close(t, m * b + (1 - m) * (o + 1.0))
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)


def test_moco_queue_is_a_ring_buffer_of_normalized_keys(batch):
    method = make("moco_v2")
    method.queue = torch.nn.functional.normalize(torch.randn(12, method.queue.shape[1]), dim=1)
    method(batch, torch.Generator().manual_seed(0))
    assert int(method.queue_pointer) == 8
    torch.testing.assert_close(method.queue[:8].norm(dim=1), torch.ones(8))
    method(batch, torch.Generator().manual_seed(1))
    assert int(method.queue_pointer) == (8 + 8) % 12  # wrapped around


def test_moco_symmetric_loss_is_the_mean_of_both_directions(batch, monkeypatch):
    first, second = torch.randn(2, 8, 3, 16, 16).unbind()
    out = {}
    for symmetric, views in [(True, (first, second)), (False, (first, second)), (False, (second, first))]:
        method = make("moco_v2", symmetric=symmetric).eval()  # same seed: the same weights and queue
        monkeypatch.setattr(method, "views", lambda images, generator, n, v=views: v)
        out[symmetric, views[0] is first] = method(batch, torch.Generator().manual_seed(0))
        assert int(method.queue_pointer) == (16 if symmetric else 8)  # both views' keys join the queue
    expected = (out[False, True]["loss"] + out[False, False]["loss"]) / 2
    torch.testing.assert_close(out[True, True]["loss"], expected)
    assert out[True, True]["embedding"].shape[0] == len(batch)


def test_moco_shuffled_keys_are_unshuffled(batch):
    from selfsup.methods.moco import forward_in_splits

    method = make("moco_v2").eval()  # eval-mode batch norm: the order of the batch cannot matter
    x = torch.randn(8, 3, 16, 16)
    encode = lambda t: method.target_projection(method.target_backbone(t))  # noqa: E731
    order = torch.randperm(8)
    shuffled = forward_in_splits(encode, x[order], 4)
    key = torch.empty_like(shuffled)
    key[order] = shuffled
    torch.testing.assert_close(key, encode(x), atol=1e-5, rtol=1e-5)


def test_densecl_loss_is_eq_4_computed_location_by_location(batch, monkeypatch):
    """L = (1 - λ) L_q + λ L_r, with L_r's positive for each query location the key location whose
    backbone feature is most alike, and negatives the dense queue; recomputed here with loops."""
    import torch.nn.functional as F

    method = make("densecl", queue_size=10, bn_splits=2, dense_weight=0.3).eval()  # eval BN: splits cannot matter
    views = torch.randn(2, 4, 3, 32, 32).unbind()
    monkeypatch.setattr(method, "views", lambda images, generator, n: views)
    queue, dense_queue = method.queue.clone(), method.dense_queue.clone()
    out = method(batch[:4], torch.Generator().manual_seed(0))
    with torch.no_grad():
        maps = [method.backbone.feature_map(views[0]), method.target_backbone.feature_map(views[1])]
        dense = [method.dense_projection(maps[0]), method.target_dense_projection(maps[1])]
        query, key = method.projection(maps[0].mean((2, 3))), method.target_projection(maps[1].mean((2, 3)))

    def info_nce(q, k, negatives, tau=0.2):
        q, k, negatives = F.normalize(q, dim=0), F.normalize(k, dim=0), F.normalize(negatives, dim=1)
        logits = torch.cat([(q @ k).view(1), negatives @ q]) / tau
        return -torch.log_softmax(logits, 0)[0]

    global_loss = torch.stack([info_nce(query[b], key[b], queue) for b in range(4)]).mean()
    terms = []
    for b in range(4):
        f_q, f_k = maps[0][b].flatten(1), maps[1][b].flatten(1)  # C x S
        for i in range(f_q.shape[1]):
            j = max(range(f_k.shape[1]), key=lambda j: float(F.cosine_similarity(f_q[:, i], f_k[:, j], dim=0)))
            terms.append(info_nce(dense[0][b].flatten(1)[:, i], dense[1][b].flatten(1)[:, j], dense_queue))
    dense_loss = torch.stack(terms).mean()
    assert maps[0].shape[-1] > 1  # a real map, several locations to match
    torch.testing.assert_close(out["global_loss"], global_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["dense_loss"], dense_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["loss"], 0.7 * global_loss + 0.3 * dense_loss, atol=1e-5, rtol=1e-5)
    # the dense queue takes each key image's mean dense vector, normalized
    torch.testing.assert_close(method.dense_queue[:4], F.normalize(dense[1].flatten(2).mean(2), dim=1),
                               atol=1e-5, rtol=1e-5)


def test_nnclr_positive_is_the_nearest_support_entry():
    method = make("nnclr")
    support = torch.nn.functional.normalize(torch.randn(len(method.support), method.support.shape[1]), dim=1)
    method.support.copy_(support)
    z = torch.randn(5, support.shape[1])
    expected = [max(range(len(support)), key=lambda j: float(support[j] @ torch.nn.functional.normalize(z[i], dim=0)))
                for i in range(5)]
    torch.testing.assert_close(method.nearest_neighbour(z), support[expected])


def test_swav_prototypes_frozen_then_trained_and_queue_joins_sinkhorn(batch):
    method = make("swav", freeze_prototypes_steps=1, queue_size=16, queue_start_step=1)
    call(method, batch)["loss"].backward()
    assert method.prototypes.weight.grad.abs().max() == 0  # frozen: a zero gradient
    assert method.queue.abs().sum() == 0  # the queue has not started
    method.zero_grad()
    method.after_step(0, 10)
    call(method, batch)["loss"].backward()
    assert method.prototypes.weight.grad.abs().max() > 0
    assert method.queue[:, :8].abs().sum() > 0 and method.queue[:, 8:].abs().sum() == 0  # newest first
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(32))  # renormalized each step
    no_queue = make("swav", queue_size=0, queue_start_step=0)  # a run shorter than the queue's start
    for step in range(2):
        assert torch.isfinite(call(no_queue, batch)["loss"])
        no_queue.after_step(step, 10)
    assert no_queue.queue.numel() == 0
    # the logged codes' perplexity: same scores, a lower ε sharpens the codes
    soft, sharp = (float(call(make("swav", epsilon=e), batch)["code_perplexity"]) for e in (0.5, 0.01))
    assert 1 <= sharp < soft <= 32


def test_dino_teacher_sees_global_crops_and_centre_moves(batch):
    method = make("dino")
    assert method.views.n_global == 2 and method.views.n_local == 8
    seen = []
    method.target_backbone.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    call(method, batch)
    assert seen == [torch.Size([16, 3, 16, 16])]  # 2 global crops x 8 images, no local crop
    assert method.criterion.center.abs().sum() > 0
    assert 1 <= float(call(method, batch)["teacher_perplexity"]) <= method.criterion.center.shape[1]
    plain = make("dino", head_batch_norm=False)  # the official ResNet-50 command's head
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.head.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in method.head.modules())
    assert torch.isfinite(call(plain, batch)["loss"])


def test_dino_last_layer_is_weight_normalized_with_g_fixed_or_learned():
    """w_k = g_k v_k / ||v_k||: with norm_last_layer the outputs are cosines (|.| <= 1) and only v
    learns; without it g starts at 1 (same outputs at init), gets a gradient, and scales row k."""
    from selfsup.methods.dino import DINOHead

    torch.manual_seed(0)
    fixed = DINOHead(6, 10, hidden_dim=8, bottleneck_dim=4, batch_norm=False)
    torch.manual_seed(0)
    learned = DINOHead(6, 10, hidden_dim=8, bottleneck_dim=4, batch_norm=False, norm_last_layer=False)
    x = torch.randn(5, 6)
    torch.testing.assert_close(learned(x), fixed(x))
    assert fixed.last_layer_norm is None and fixed(x).abs().max() <= 1 + 1e-6
    learned(x).sum().backward()
    assert learned.last_layer_norm.grad is not None and learned.last_layer_norm.grad.abs().sum() > 0
    with torch.no_grad():
        learned.last_layer_norm[3] = 5.0
    bottleneck = torch.nn.functional.normalize(learned.mlp(x), dim=1)
    expected = 5.0 * bottleneck @ torch.nn.functional.normalize(learned.last_layer[3], dim=0)
    torch.testing.assert_close(learned(x)[:, 3], expected)
    learned.zero_grad()
    learned(x, freeze_last_layer=True).sum().backward()  # the first epoch: v and g both frozen
    assert learned.last_layer_norm.grad.abs().sum() == 0 and learned.last_layer.grad.abs().sum() == 0


@pytest.mark.parametrize("name", ["swav", "dino"])
def test_multi_crop_backbone_runs_per_resolution_and_the_head_once_on_all_crops(batch, name):
    """As the official code (DINO's MultiCropWrapper, SwAV's forward_head): the backbone's batch norm
    sees one resolution at a time, the head's sees every crop's features together."""
    from selfsup.methods.multicrop import encode_crops

    method = make(name)
    head = method.head.mlp if name == "dino" else method.projection
    backbone_batches, head_batches = [], []
    method.backbone.register_forward_hook(lambda m, i, o: backbone_batches.append(i[0].shape[0]))
    head.register_forward_hook(lambda m, i, o: head_batches.append(i[0].shape[0]))
    call(method, batch)
    crops = method.views.n_global + method.views.n_local
    assert backbone_batches == [8 * method.views.n_global, 8 * method.views.n_local] and head_batches == [8 * crops]

    bn = torch.nn.BatchNorm1d(4)  # the head: one normalization over all crops' features
    parts = [torch.randn(3, 2, 5, 5), torch.randn(3, 2, 5, 5), torch.randn(3, 2, 2, 2)]
    pooled = lambda x: torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)  # noqa: E731
    out = encode_crops(pooled, bn, parts)
    features = torch.cat([pooled(torch.cat(parts[:2])), pooled(parts[2])])
    expected = (features - features.mean(0)) / (features.var(0, unbiased=False) + bn.eps).sqrt()
    torch.testing.assert_close(torch.cat(out), expected)


def test_pirl_memory_bank_is_a_running_average(batch):
    method = make("pirl")
    before = method.memory.clone()
    out = call(method, batch)
    f = torch.nn.functional.normalize(out["embedding"].detach(), dim=1)
    expected = torch.nn.functional.normalize(0.5 * before + 0.5 * f, dim=1)
    torch.testing.assert_close(method.memory, expected)
    assert method.criterion.partition > 0


def test_directpred_predictor_is_set_not_trained(batch):
    method = make("directpred")
    assert not any("predict" in n for n, _ in method.named_parameters())  # a buffer, not a parameter
    call(method, batch)
    w = method.prediction.weight  # the DirectPredictor's buffer
    torch.testing.assert_close(w, w.T)
    assert not torch.allclose(w, torch.eye(len(w)))


def test_deepcluster_samples_clusters_uniformly_and_resets_its_classifier():
    from selfsup.methods.deepcluster import cluster_uniform_order, pca_whiten_normalize

    labels = np.array([0] * 90 + [1] * 8 + [2] * 2 + [-1] * 5)
    order = cluster_uniform_order(labels, 90, torch.Generator().manual_seed(0))
    counts = np.bincount(labels[order], minlength=3)
    assert len(order) == 90 and (labels[order] >= 0).all() and counts.tolist() == [30, 30, 30]
    reduced = pca_whiten_normalize(np.random.default_rng(0).normal(size=(200, 32)) * np.arange(1, 33), 8)
    assert reduced.shape == (200, 8)
    np.testing.assert_allclose(np.linalg.norm(reduced, axis=1), 1.0, atol=1e-5)

    images = batch_of(8)
    method = make("deepcluster", images)
    assert int(method.labels_epoch) == 0 and method.pseudo_labels.min() >= 0
    calls = []
    context = EpochContext(0, 8, 0, torch.optim.SGD(method.parameters(), lr=0.1), torch.device("cpu"),
                           lambda: calls.append(1))
    weight = method.classifier.weight.clone()
    method.plan_epoch(context)  # same epoch again (a resume): saved labels reused, no clustering
    assert not calls and torch.equal(method.classifier.weight, weight)


def test_byol_paper_scale_is_eq_2_summed_over_both_directions(batch):
    """(2 - 2 cos(q(z₁), z'₂)) + (2 - 2 cos(q(z₂), z'₁)) computed by hand from the method's own parts;
    the default is the mean negative cosine, the same up to 4 + 4x."""
    method = make("byol", paper_scale=True)
    loss = call(method, batch)["loss"]
    view1, view2 = method.views(batch, torch.Generator().manual_seed(0), n=2)
    both = torch.cat([view1, view2])
    p1, p2 = method.prediction(method.projection(method.backbone(both))).chunk(2)
    t1, t2 = method.target_projection(method.target_backbone(both)).chunk(2)
    unit = torch.nn.functional.normalize
    paper = ((unit(p1) - unit(t2)).pow(2).sum(1) + (unit(p2) - unit(t1)).pow(2).sum(1)).mean()
    torch.testing.assert_close(loss, paper, rtol=1e-5, atol=1e-5)
    default = call(make("byol"), batch)["loss"]
    torch.testing.assert_close(loss, 4 + 4 * default, rtol=1e-5, atol=1e-5)
