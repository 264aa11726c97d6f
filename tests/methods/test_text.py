"""Text: sources, tokenizer, the pretext label generators, the losses, the four methods and the CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED, SST2_SLICE, needs_shared
from selfsup.methods.base import method_defaults
from selfsup.data.text import (CLS, MASK, PAD, SEP, TextPool, TokenSpec, deduplicate, encode, is_text_source,
                               read_texts, token_counts, train_tokenizer)
from selfsup.utils.errors import ConfigError, SelfSupError
from selfsup.losses.language import IGNORE, negative_sampling_loss, token_cross_entropy
from selfsup.methods import METHODS
from selfsup.views.text import (FIRST_WORD, keep_probability, mask_tokens, next_token_targets, noise_distribution,
                                sentence_order_pairs, skipgram_pairs)

SST2 = SHARED / "sst2"  # the full data set: only the needs_shared checks read it
TEXT_METHODS = [n for n in METHODS.names() if METHODS.get(n).modality == "text"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sst2_slice(tmp_path_factory) -> Path:
    """Every 40th row of SST-2's train.tsv (real phrases, both labels): about 1,700 texts."""
    path = tmp_path_factory.mktemp("sst2") / "slice.tsv"
    path.write_bytes((SST2_SLICE / "train-every40.tsv").read_bytes())
    return path


@pytest.fixture(scope="module")
def slice_pool(sst2_slice) -> TextPool:
    collection = deduplicate(read_texts(sst2_slice))
    tokenizer = train_tokenizer(collection.texts, "bpe", 1000)
    spec = TokenSpec(tokenizer.get_vocab_size(), 32)
    pool = TextPool(collection, tokenizer, spec)
    spec.counts = token_counts(pool.array, spec.vocab_size)
    return pool


# --- sources -------------------------------------------------------------------------------------------

def test_sst2_reads_with_its_label_first_header_and_test_split():
    train = read_texts(SST2_SLICE / "train-every40.tsv")
    assert len(train) == 1684 and train.classes == ["0", "1"]
    assert np.bincount(train.labels).tolist() == [731, 953]
    dev = read_texts(SST2_SLICE / "dev-first80.tsv")  # its header says "content", not "sentence"
    assert len(dev) == 80 and dev.texts[0] == "one long string of cliches ." and dev.labels[0] == 0


@needs_shared
def test_the_shared_sst2_holds_the_full_splits():
    train = read_texts(SST2 / "train.tsv")
    assert len(train) == 67349 and np.bincount(train.labels).tolist() == [29780, 37569]  # the README's counts
    assert len(read_texts(SST2 / "dev.tsv")) == 872 and len(deduplicate(train)) < len(train)


def test_sources_txt_folders_csv_and_bad_input(tmp_path, caplog):
    (tmp_path / "a.txt").write_bytes(b"first line\n\n  \nsecond \xff\xfe line\nthird line\n")
    with caplog.at_level("WARNING", logger="selfsup"):
        plain = read_texts(tmp_path / "a.txt")
    assert plain.texts == ["first line", "third line"] and plain.labels is None and plain.skipped == 3
    assert any("not UTF-8" in r.message for r in caplog.records)
    for label, texts in (("neg", ["bad film", "dull"]), ("pos", ["great fun"])):
        (tmp_path / "folder" / label).mkdir(parents=True)
        (tmp_path / "folder" / label / "x.txt").write_text("\n".join(texts))
    folder = read_texts(tmp_path / "folder")
    assert folder.classes == ["neg", "pos"] and folder.labels.tolist() == [0, 0, 1]
    assert is_text_source(tmp_path / "folder") and is_text_source(tmp_path / "a.txt") and not is_text_source("digits")
    (tmp_path / "folder" / "pos" / "cover.jpg").write_bytes(b"")
    assert not is_text_source(tmp_path / "folder")  # any image makes it an image folder
    (tmp_path / "r.csv").write_text('id,review,label\n1,"good, really ""good""",pos\n2,,neg\n3,meh,neg\n')
    table = read_texts(tmp_path / "r.csv")
    assert table.texts == ['good, really "good"', "meh"] and table.labels.tolist() == [1, 0] and table.skipped == 1
    (tmp_path / "nocol.tsv").write_text("id\tscore\tlabel\n1\t2\t0\n")
    with pytest.raises(ConfigError, match="no text column.*id, score, label"):
        read_texts(tmp_path / "nocol.tsv")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(SelfSupError, match="no non-empty text"):
        read_texts(tmp_path / "empty.txt")
    with pytest.raises(SelfSupError, match="not found"):
        read_texts(tmp_path / "missing.tsv")


def test_tokenizer_is_deterministic_with_special_ids_first(slice_pool):
    texts = slice_pool.collection.texts
    a = train_tokenizer(texts, "bpe", 1000)
    assert all(train_tokenizer(texts, "bpe", 1000).get_vocab() == a.get_vocab() for _ in range(3))
    assert [a.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [PAD, 1, CLS, SEP, MASK]
    ids = encode(a, ["a gripping , funny film", "x " * 100], 12)
    assert ids[0, 0] == CLS and SEP in ids[0] and ids[0, -1] == PAD
    assert ids[1, 0] == CLS and ids[1, -1] == SEP and (ids[1] != PAD).all()  # truncated, [SEP] kept
    words = train_tokenizer(texts, "word", 500)
    assert words.get_vocab_size() <= 500 and words.token_to_id("film") is not None


# --- pretext label generators -----------------------------------------------------------------------------

def _ids(rows: int, length: int, vocab: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, length - 1, (rows,), generator=g)
    ids = torch.randint(FIRST_WORD, vocab, (rows, length), generator=g)
    ids[:, 0] = CLS
    for i, n in enumerate(lengths.tolist()):
        ids[i, n + 1] = SEP
        ids[i, n + 2:] = PAD
    return ids


def test_masking_statistics_are_bert_s_15_80_10_10():
    ids = _ids(4000, 64, 1000)  # ~120k word tokens, ~18k selected: the shares' std is under 0.003
    inputs, targets = mask_tokens(ids, 1000, torch.Generator().manual_seed(1))
    words = ids >= FIRST_WORD
    selected = targets != IGNORE
    assert not (selected & ~words).any()  # [CLS], [SEP] and padding are never selected
    assert selected.sum() / words.sum() == pytest.approx(0.15, abs=0.005)
    masked = (inputs[selected] == MASK).float().mean()
    same = (inputs[selected] == ids[selected]).float().mean()
    assert masked == pytest.approx(0.8, abs=0.01) and same == pytest.approx(0.1 + 0.1 / 1000, abs=0.01)
    replaced = inputs[selected][(inputs[selected] != MASK) & (inputs[selected] != ids[selected])]
    assert replaced.numel() / selected.sum() == pytest.approx(0.1, abs=0.01) and (replaced >= FIRST_WORD).all()
    assert torch.equal(targets[selected], ids[selected]) and torch.equal(inputs[~selected], ids[~selected])
    again, _ = mask_tokens(ids, 1000, torch.Generator().manual_seed(1))
    assert torch.equal(inputs, again)  # seeded


def test_next_token_targets_shift_and_the_causal_mask_blocks_the_future():
    from selfsup.backbones.text import build_text_backbone

    ids = _ids(4, 12, 50)
    targets = next_token_targets(ids)
    real = ids[:, 1:] != PAD
    assert torch.equal(targets[:, :-1][real], ids[:, 1:][real]) and (targets[:, :-1][~real] == IGNORE).all()
    torch.manual_seed(0)
    model = build_text_backbone("text-transformer-tiny", 50, 12).model.eval()
    changed = ids.clone()
    changed[:, 6] = (ids[:, 6] + 1 - FIRST_WORD) % (50 - FIRST_WORD) + FIRST_WORD
    causal_a, causal_b = model.sequence(ids, causal=True), model.sequence(changed, causal=True)
    torch.testing.assert_close(causal_a[:, :6], causal_b[:, :6], atol=1e-6, rtol=0)  # t < 6 never sees token 6
    assert (causal_a[:, 6] - causal_b[:, 6]).abs().max() > 1e-3
    full_a, full_b = model.sequence(ids), model.sequence(changed)
    assert (full_a[:, :6] - full_b[:, :6]).abs().max() > 1e-3  # without the mask, earlier positions do see it


def test_sentence_order_pairs_are_balanced_halves_in_or_out_of_order():
    ids = _ids(101, 20, 300)
    ids[0, 2:] = PAD  # a one-word text cannot be cut
    ids[0, 2] = SEP
    pairs, labels = sentence_order_pairs(ids, torch.Generator().manual_seed(3))
    assert labels[0] == IGNORE
    usable = labels != IGNORE
    assert abs(int((labels[usable] == 1).sum()) - int((labels[usable] == 0).sum())) <= 1  # balanced
    for row, pair, label in zip(ids[1:], pairs[1:], labels[1:]):
        words = row[row >= FIRST_WORD].tolist()
        tokens = pair[pair != PAD].tolist()
        assert tokens[0] == CLS and tokens[-1] == SEP and tokens.count(SEP) == 2
        cut = tokens.index(SEP)
        first, second = tokens[1:cut], tokens[cut + 1:-1]
        assert first and second
        joined = first + second if label == 1 else second + first
        assert joined == words[:len(joined)] and len(joined) >= len(words) - 1  # at most one word dropped (a full row)
    flips = [sentence_order_pairs(ids, torch.Generator().manual_seed(s))[1][5].item() for s in range(20)]
    assert 0 < sum(flips) < 20  # which rows are swapped is random


def test_subsampling_and_noise_follow_mikolov_s_formulas():
    counts = torch.tensor([0, 0, 0, 0, 0, 1000, 100, 10, 1], dtype=torch.float64)
    keep = keep_probability(counts, threshold=1e-2)
    f = counts / counts.sum()
    expected = torch.where(f > 0, torch.sqrt(1e-2 / f.clamp_min(1e-30)).clamp(max=1), torch.ones_like(f))
    torch.testing.assert_close(keep.double(), expected, atol=1e-6, rtol=1e-6)
    assert keep[5] < keep[6] < 1 and keep[8] == 1  # the most frequent word is dropped most
    noise = noise_distribution(counts)
    assert (noise[:FIRST_WORD] == 0).all() and float(noise.sum()) == pytest.approx(1.0)
    assert float(noise[5] / noise[6]) == pytest.approx(10 ** 0.75, rel=1e-5)


def test_skipgram_pairs_are_the_words_within_each_window():
    ids = _ids(6, 15, 40)
    keep = torch.ones(40)
    centres, contexts = skipgram_pairs(ids, keep, 1, torch.Generator().manual_seed(0))
    expected = []
    for row in ids.tolist():
        words = [t for t in row if t >= FIRST_WORD]
        for i in range(len(words)):
            expected += [(words[i], words[j]) for j in (i - 1, i + 1) if 0 <= j < len(words)]
    assert sorted(zip(centres.tolist(), contexts.tolist())) == sorted(expected)
    centres, contexts = skipgram_pairs(ids, keep, 4, torch.Generator().manual_seed(0))
    assert (centres >= FIRST_WORD).all() and (contexts >= FIRST_WORD).all()
    assert len(expected) <= len(centres) <= 4 * len(expected)  # reduced windows: between 1 and 4 words a side
    none_kept, _ = skipgram_pairs(ids, torch.zeros(40), 4, torch.Generator().manual_seed(0))
    assert len(none_kept) == 0
    short = torch.tensor([[CLS, 7, SEP], [CLS, 8, SEP]])  # a length-bucketed batch of one-word texts, window 5
    assert len(skipgram_pairs(short, keep, 5, torch.Generator().manual_seed(0))[0]) == 0
    two = torch.tensor([[CLS, 7, 9, SEP]])
    assert sorted(zip(*[t.tolist() for t in skipgram_pairs(two, keep, 5, torch.Generator().manual_seed(0))])) == [(7, 9), (9, 7)]


# --- losses ----------------------------------------------------------------------------------------------

def test_negative_sampling_loss_matches_its_formula_in_float64():
    g = torch.Generator().manual_seed(0)
    v, u, n = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g), torch.randn(7, 3, 5, generator=g)
    total = 0.0
    for p in range(7):
        vi, uo = v[p].double(), u[p].double()
        total += -math.log(1 / (1 + math.exp(-float(uo @ vi))))
        total += sum(-math.log(1 / (1 + math.exp(float(n[p, k].double() @ vi)))) for k in range(3))
    assert float(negative_sampling_loss(v.double(), u.double(), n.double())) == pytest.approx(total / 7, abs=1e-6)


def test_token_cross_entropy_averages_over_target_positions_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    targets = torch.tensor([[1, IGNORE, 3, IGNORE], [IGNORE, 0, IGNORE, 5]])
    terms = [-(logits[b, t, targets[b, t]] - torch.logsumexp(logits[b, t], 0)) for b in range(2) for t in range(4)
             if targets[b, t] != IGNORE]
    assert float(token_cross_entropy(logits, targets)) == pytest.approx(float(sum(terms) / 4), abs=1e-6)
    nothing = token_cross_entropy(logits.requires_grad_(), torch.full((2, 4), IGNORE))
    assert nothing.item() == 0.0 and nothing.requires_grad


# --- methods, registry-driven -------------------------------------------------------------------------------

def _text_method(name: str, pool: TextPool):
    from selfsup.backbones.text import build_text_backbone

    torch.manual_seed(0)
    cls = METHODS.get(name)
    spec = pool.spec
    if cls.tokenizer == "word":
        tokenizer = train_tokenizer(pool.collection.texts, "word", 2000)
        spec = TokenSpec(tokenizer.get_vocab_size(), 32, "word")
        pool = TextPool(pool.collection, tokenizer, spec)
        spec.counts = token_counts(pool.array, spec.vocab_size)
    small = "text-transformer-tiny" if cls.recipe.backbone.startswith("text-transformer") else cls.recipe.backbone
    backbone = build_text_backbone(small, spec.vocab_size, spec.max_length)
    return cls(backbone, spec, **method_defaults(cls)), pool


@pytest.mark.parametrize("name", TEXT_METHODS)
def test_text_method_trains_on_real_sst2_loss_finite_and_falling(name, slice_pool):
    method, pool = _text_method(name, slice_pool)
    batch = torch.from_numpy(pool.array[:64])
    out = method(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"]) and out["embedding"].shape == (64, method.backbone.feature_dim)
    out["loss"].backward()
    missing = [n for n, p in method.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
    optimizer = torch.optim.AdamW(method.parameters(), lr=3e-3)
    losses = []
    for step in range(20):  # the same batch and the same random labels every step
        loss = method(batch, torch.Generator().manual_seed(0))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0] - 0.1, losses  # sentence order starts at ln 2, the others near ln V


def test_methods_check_their_encoder(slice_pool):
    from selfsup.backbones.text import build_text_backbone

    spec = slice_pool.spec
    with pytest.raises(ValueError, match="token-sequence encoder"):
        METHODS.get("mlm")(build_text_backbone("word-embedding", spec.vocab_size, 32), spec)
    with pytest.raises(ValueError, match="word-embedding"):
        METHODS.get("word2vec")(build_text_backbone("text-transformer-tiny", spec.vocab_size, 32), spec)


# --- command line -------------------------------------------------------------------------------------------

def _pretrain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--quiet", "--json", *args],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                                "OMP_NUM_THREADS": "2"})


def test_pretrain_on_text_writes_a_loadable_encoder_and_resumes_exactly(sst2_slice, tmp_path):
    from safetensors.torch import load_file

    import selfsup
    from selfsup.backbones.io import load_backbone

    run = ["--data", str(sst2_slice), "--method", "mlm", "--backbone", "text-transformer-tiny", "--steps", "6",
           "--batch-size", "32", "--checkpoint-every", "3", "--max-length", "32", "--vocab-size", "1000"]
    whole = _pretrain(*run, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    result = json.loads(whole.stdout.strip().splitlines()[-1])
    assert result["tokens_per_second"] > 0 and 0.4 < result["knn_top1"] <= 1 and result["n_images"] < 1700
    info = json.loads((tmp_path / "whole" / "encoder.json").read_text())
    assert info["modality"] == "text" and info["tokens"]["max_length"] == 32 and info["tokenizer"] == "tokenizer.json"
    assert (tmp_path / "whole" / "tokenizer.json").exists()
    backbone, _ = load_backbone(tmp_path / "whole")
    assert backbone.feature_dim == 128 and selfsup.load_encoder  # the public loader's module still imports
    killed = subprocess.run([sys.executable, "-m", "selfsup", "pretrain", "--quiet", *run, "--out", str(tmp_path / "r")],
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "SELFSUP_KILL_AT_STEP": "4"},
                            capture_output=True)
    assert killed.returncode != 0
    resumed = _pretrain("--resume", "--out", str(tmp_path / "r"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = load_file(tmp_path / "whole" / "encoder.safetensors"), load_file(tmp_path / "r" / "encoder.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-6, msg=key)


def test_text_and_image_methods_refuse_the_other_modality(sst2_slice, tmp_path, capsys):
    from selfsup.cli import main

    cases = [(["--data", str(sst2_slice), "--method", "simclr"], "is text and simclr works on images"),
             (["--data", "digits", "--method", "mlm"], "mlm is a text method"),
             (["--data", str(sst2_slice), "--method", "word2vec", "--backbone", "text-transformer"], "word-embedding"),
             (["--data", str(sst2_slice), "--method", "mlm", "--show-batch", "x.png"], "draws images")]
    for i, (args, message) in enumerate(cases):
        assert main(["pretrain", "--quiet", "--steps", "1", *args, "--out", str(tmp_path / str(i))]) == 2
        assert message in capsys.readouterr().err


def test_word_vectors_answer_neighbours_and_analogies_by_cosine(tmp_path):
    from selfsup.evaluate.words import WordVectors

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "man", "king", "woman", "queen", "film"]
    vectors = torch.tensor([[0.0, 0, 0]] * 5 + [[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [-1, -1, -1]])
    words = WordVectors(vectors, tokens)
    near = words.nearest("king", k=3)
    assert [w for w, _ in near] == ["man", "queen", "woman"] and near[0][1] == pytest.approx(2 ** -0.5, abs=1e-4)
    assert words.analogy("man", "king", "woman", k=1)[0][0] == "queen"  # king - man + woman = (0, 1, 1)
    with pytest.raises(SelfSupError, match="not in the vocabulary"):
        words.nearest("[MASK]")
    lines = words.export(tmp_path / "v.txt").read_text().splitlines()
    assert lines[0] == "5 3" and lines[2].split()[0] == "king" and [float(x) for x in lines[2].split()[1:]] == [1, 1, 0]


# --- transfer -------------------------------------------------------------------------------------------------

def test_phrases_of_one_sentence_share_a_group_and_tiny_subsets_take_one_each():
    from selfsup.data.splits import labeled_subset
    from selfsup.data.text import labeled_texts, phrase_groups, TextCollection

    sentence = "a gripping and often very funny portrait of a family at war"
    other = "the plot is thin and the jokes land with a dull thud"
    texts = [sentence, "often very funny portrait of a family", "gripping and often very funny", other,
             "the jokes land with a dull thud", "thin and the jokes land"]
    groups = phrase_groups(texts)
    assert len(set(groups[:3])) == 1 and len(set(groups[3:])) == 1 and groups[0] != groups[3]
    labels = np.array([1, 1, 1, 0, 0, 0])
    for seed in range(5):
        subset = labeled_subset(labels, seed, per_class=2, groups=groups)
        assert len(subset) == 2 and set(labels[subset]) == {0, 1}  # one per sentence, though 2 were asked per class
    assert len(labeled_subset(labels, 0, per_class=2)) == 4  # without groups, as before
    pool = labeled_texts(TextCollection(texts + ["Often  very funny portrait of a FAMILY", "too short"],
                                        np.array([1, 1, 1, 0, 0, 0, 1, 0]), ["0", "1"], "x"), min_words=5)
    assert pool.texts == texts  # the duplicate (up to case and spaces) and the 2-word text are dropped


@pytest.fixture(scope="module")
def text_run(sst2_slice, tmp_path_factory) -> Path:
    from selfsup.cli import main

    out = tmp_path_factory.mktemp("textrun") / "mlm"
    assert main(["pretrain", "--quiet", "--data", str(sst2_slice), "--method", "mlm", "--backbone",
                 "text-transformer-tiny", "--steps", "4", "--batch-size", "32", "--max-length", "32",
                 "--vocab-size", "1000", "--out", str(out)]) == 0
    return out


def test_finetune_and_linear_probe_run_on_a_text_encoder(text_run, sst2_slice, tmp_path, capsys):
    from selfsup.cli import main

    dev = tmp_path / "dev.tsv"
    dev.write_bytes((SST2_SLICE / "dev-first80.tsv").read_bytes())
    common = ["--checkpoint", str(text_run), "--labeled", str(sst2_slice), "--test", str(dev), "--json"]
    assert main(["eval", "linear", *common]) == 0
    probe = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert probe["n_test"] == 80 and 500 < probe["n_train"] < 1700 and 0 <= probe["top1"] <= 1
    assert main(["finetune", *common, "--labels-per-class", "4", "--seeds", "1", "--steps", "3", "--quiet",
                 "--out", str(tmp_path / "ft")]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"][0]
    assert row["n_labels"] == 8 and 0 <= row["scratch_accuracy"] <= 1 and 0 <= row["pretrained_accuracy"] <= 1
    subset = (tmp_path / "ft" / "subsets" / "lpc4-seed0.txt").read_text().splitlines()
    assert len(subset) == 8 and all(len(t.split()) >= 5 for t in subset)  # saved as the texts themselves
    assert main(["eval", "linear", "--checkpoint", str(text_run), "--labeled", str(sst2_slice)]) == 2
    assert "needs --test" in capsys.readouterr().err


def test_words_command_reads_a_text_run(text_run, tmp_path, capsys):
    from selfsup.cli import main

    assert main(["words", "--checkpoint", str(text_run), "film", "-k", "3", "--export", str(tmp_path / "v.txt"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["neighbours"]["film"]) == 3 and "film" not in [w for w, _ in result["neighbours"]["film"]]
    assert (tmp_path / "v.txt").read_text().split("\n", 1)[0].endswith(" 128")
    assert main(["words", "--checkpoint", str(text_run), "--analogy", "a:b"]) == 1
    assert "A:B::C" in capsys.readouterr().err


def test_a_text_study_compares_pretrained_and_scratch_on_distinct_sentences(text_run, sst2_slice, tmp_path, capsys):
    from selfsup.cli import main

    dev = tmp_path / "dev.tsv"
    dev.write_text("\n".join((SST2_SLICE / "dev-first80.tsv").read_text().splitlines()[:61]) + "\n")
    args = ["study", "--checkpoint", f"mlm={text_run}", "--methods", "", "--labeled", str(sst2_slice), "--test", str(dev),
            "--labels-per-class", "2,all", "--seeds", "2", "--out", str(tmp_path / "study"), "--quiet", "--json",
            "--config", str(tmp_path / "c.yaml")]
    (tmp_path / "c.yaml").write_text("finetune_steps: 2\nlr_grid: [0.001]\nmap_points: 40\n")
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cells = {(s["method"], s["evaluation"], s["budget"]) for s in result["summary"]}
    assert {("mlm", "finetune", "2"), ("scratch", "scratch", "2"), ("mlm", "knn", "all")} <= cells
    assert result["diagnostics"]["mlm"]["alignment"] is None  # no views to align on text
    assert (tmp_path / "study" / "report.html").exists() and (tmp_path / "study" / "label_efficiency.png").exists()
    for seed in range(2):
        subset = (tmp_path / "study" / "subsets" / f"2-seed{seed}.txt").read_text().splitlines()
        assert len(subset) == 4
    args[args.index("--out") + 1] = str(tmp_path / "study2")
    assert main([*args[:3], "--methods", "fixmatch", *args[5:]]) == 2  # semi-supervised rows are for images
    assert "train on images" in capsys.readouterr().err


def test_text_epochs_are_length_bucketed_seeded_permutations(slice_pool):
    from selfsup.data.order import bucketed_order

    lengths = slice_pool.lengths
    order = bucketed_order(lengths, 32, seed=0, epoch=3)
    assert len(order) == len(lengths) // 32 * 32 and len(set(order.tolist())) == len(order)  # each text once
    assert np.array_equal(order, bucketed_order(lengths, 32, 0, 3)) and not np.array_equal(order, bucketed_order(lengths, 32, 0, 4))
    padded = lengths[order].reshape(-1, 32).max(1).sum()
    shuffled = lengths[np.random.default_rng(0).permutation(len(lengths))[:len(order)]].reshape(-1, 32).max(1).sum()
    assert padded < 0.6 * shuffled  # far less padding than random batches
    method, _ = _text_method("mlm", slice_pool)
    from selfsup.methods import EpochContext

    context = EpochContext(3, len(lengths), 0, None, torch.device("cpu"), lambda: None, batch_size=32, lengths=lengths)
    assert np.array_equal(method.plan_epoch(context), order)


# --- Hugging Face transformers encoders ----------------------------------------------------------------

TINY_BERT = "hf:bert:hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64"


def test_hugging_face_models_are_text_encoders_measured_causal_or_not(slice_pool, sst2_slice, tmp_path):
    pytest.importorskip("transformers")
    from selfsup.backbones.io import build_like, load_backbone
    from selfsup.backbones.text import build_text_backbone
    from selfsup.cli import main

    spec = slice_pool.spec
    torch.manual_seed(0)
    bert = build_text_backbone(TINY_BERT, spec.vocab_size, 32)
    gpt = build_text_backbone("hf:gpt2:n_embd=32,n_layer=1,n_head=2", spec.vocab_size, 32)
    assert not bert.model.causal and gpt.model.causal and bert.feature_dim == 32
    config = bert.spec.config
    assert config["vocab_size"] == spec.vocab_size and config["pad_token_id"] == PAD
    assert config["hidden_dropout_prob"] == config["attention_probs_dropout_prob"] == 0.0
    ids = torch.from_numpy(slice_pool.array[:8])
    longest = int((ids != PAD).sum(1).max())
    with torch.no_grad():  # padding is masked: trimming it changes nothing
        torch.testing.assert_close(bert.eval()(ids), bert(ids[:, :longest]), atol=1e-5, rtol=1e-5)
        later = ids.clone()
        later[:, 3] = FIRST_WORD + 7  # GPT-2's states before position 3 never see it
        torch.testing.assert_close(gpt.model.sequence(ids, causal=True)[:, :3], gpt.model.sequence(later, causal=True)[:, :3])
        rebuilt = build_like(bert.spec)  # from the saved config alone
        rebuilt.model.load_state_dict(bert.model.state_dict())
        torch.testing.assert_close(rebuilt.eval()(ids), bert(ids))
    bert.train()
    mlm = METHODS.get("mlm")(bert, spec)
    optimizer = torch.optim.AdamW(mlm.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = mlm(ids, torch.Generator().manual_seed(0))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert math.isfinite(losses[0]) and losses[-1] < losses[0] - 0.1, losses
    assert torch.isfinite(METHODS.get("next_token")(gpt, spec)(ids, torch.Generator())["loss"])
    with pytest.raises(ConfigError, match="causal model"):
        METHODS.get("next_token")(bert, spec)(ids, torch.Generator())
    for name, message in [("hf:bert:nokey=1", "no setting 'nokey'"), ("hf:", "model type"),
                          ("hf:no_such_type", "no_such_type"), (f"hf:{tmp_path / 'none.json'}", "does not exist")]:
        with pytest.raises(ConfigError, match=message):
            build_text_backbone(name, spec.vocab_size, 32)
    out = tmp_path / "run"  # the whole path: pretrain, encoder.json holding the config, reload
    assert main(["pretrain", "--quiet", "--data", str(sst2_slice), "--method", "mlm", "--backbone", TINY_BERT,
                 "--steps", "2", "--batch-size", "16", "--max-length", "32", "--vocab-size", "1000", "--out", str(out)]) == 0
    info = json.loads((out / "encoder.json").read_text())
    assert info["backbone"]["name"] == TINY_BERT and info["backbone"]["config"]["model_type"] == "bert"
    loaded, _ = load_backbone(out)
    assert loaded.feature_dim == 32


def test_language_models_warn_on_dimensional_collapse_only():
    from selfsup.utils.monitor import CollapseWatch
    from selfsup.evaluate.finetune import lr_grid_for

    assert not any(METHODS.get(n).collapse_prone for n in TEXT_METHODS) and METHODS.get("simclr").collapse_prone
    noise = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    anisotropic = 10.0 + 0.01 * noise  # every text near one shared direction, but full rank
    lenient, strict = CollapseWatch(std_floor=0.0, patience=1), CollapseWatch(patience=1)
    for check in range(5):  # a run that starts concentrated gets 4x the patience to spread
        lenient.check(anisotropic, check)
        strict.check(anisotropic, check)
    assert strict.warned and not lenient.warned
    lenient.check(noise[:1].expand(64, 32), 2)  # one point: rank 1
    assert lenient.warned
    # fine-tuning: AdamW rates for Transformers, SGD rates for images, unless a grid is given
    assert lr_grid_for([], True) == [1e-4, 3e-4, 1e-3] and lr_grid_for([], False) == [0.001, 0.003, 0.01]
    assert lr_grid_for([0.5], True) == [0.5]
