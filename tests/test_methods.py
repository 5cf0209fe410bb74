import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from tgsemi import checkpoint, distributed
from tgsemi.config import LossConfig, ModelConfig, load_config
from tgsemi.distributed import all_gather_with_grad
from tgsemi.engine import train
from tgsemi.errors import ArgumentError, ConfigError
from tgsemi.methods import METHODS, Batch, Method, get_method, register
from tgsemi.methods.base import accuracy, pseudo_label_accuracy, split
from tgsemi.models import StreamOutput, create_model

K = 20  # classes


def identity(t):
    return t


# ---- plain reference formulas (python floats, explicit loops) ----


def ref_softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def ref_ce(row, target):
    return -math.log(ref_softmax(row)[target])


def ref_pseudo(weak_rows, threshold):
    labels, mask = [], []
    for row in weak_rows:
        p = ref_softmax(row)
        labels.append(max(range(len(p)), key=p.__getitem__))
        mask.append(max(p) >= threshold)
    return labels, mask


def ref_aligned_pseudo(weak_rows, threshold, other_ranks_p=()):
    """Divide each softmax by the mean softmax over every rank's weak rows, renormalise."""
    ps = [ref_softmax(row) for row in weak_rows]
    everyone = list(other_ranks_p) + ps
    mean = [sum(p[k] for p in everyone) / len(everyone) for k in range(K)]
    labels, mask = [], []
    for p in ps:
        q = [p[k] / mean[k] for k in range(K)]
        q = [v / sum(q) for v in q]
        labels.append(max(range(K), key=q.__getitem__))
        mask.append(max(q) >= threshold)
    return labels, mask


def ref_masked_ce(strong_rows, labels, mask):
    return sum(ref_ce(row, y) for row, y, m in zip(strong_rows, labels, mask) if m) / len(mask)


def ref_align(f, g):
    """1 - mean over clips and positions of the cosine over channels."""
    n, c, t, h, w = f.shape
    cosines = []
    for i in range(n):
        for ti in range(t):
            for hi in range(h):
                for wi in range(w):
                    a = [f[i, ch, ti, hi, wi].item() for ch in range(c)]
                    b = [g[i, ch, ti, hi, wi].item() for ch in range(c)]
                    dot = sum(x * y for x, y in zip(a, b))
                    cosines.append(dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)))
    return 1 - sum(cosines) / len(cosines)


def ref_unit(rows):
    return [[v / math.sqrt(sum(x * x for x in r)) for v in r] for r in rows]


def ref_nce(a, b, tau, offset=0):
    """Anchor a_i, candidates every b_j (positive b_{offset+i}) and nothing else."""
    total = 0.0
    for i, ai in enumerate(a):
        sims = [sum(x * y for x, y in zip(ai, bj)) / tau for bj in b]
        log_softmax = sims[offset + i] - math.log(sum(math.exp(s) for s in sims))
        total -= log_softmax
    return total / len(a)


# ---- fixtures ----


def stream(n_l, n_u, seed, weak=None, proj_dim=6):
    """A fake network output with leaf tensors, so gradients can be inspected."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n_l + 2 * n_u, K, generator=g)
    if weak is not None:
        logits[n_l : n_l + n_u] = torch.tensor(weak)
    n = n_l + 2 * n_u
    shapes = [(5, 3, 2, 2), (4, 2, 2, 1), (6, 1, 1, 2), (3, 1, 1, 1)]  # (C, T, H, W) per stage
    features = [torch.randn(n, *s, generator=g).requires_grad_() for s in shapes]
    return StreamOutput(
        logits=logits.requires_grad_(),
        features=features,
        pooled=torch.randn(n, 8, generator=g),
        projection=torch.randn(n_l + n_u, proj_dim, generator=g).requires_grad_(),
    )


def p_max_one_hot(a):
    """Softmax maximum of the logits [a, 0, ..., 0]."""
    return math.exp(a) / (math.exp(a) + K - 1)


def one_hot_row(cls, a):
    row = [0.0] * K
    row[cls] = a
    return row


def batch(n_l, n_u, on=True, seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    return Batch(y=torch.randint(0, K, (n_l,), generator=g), n_l=n_l, n_u=n_u, unlabeled_on=on)


def rows(t):
    return t.detach().double().tolist()


# ---- supervised and FixMatch ----


def test_supervised_is_cross_entropy_on_labeled_clips():
    out, b = stream(5, 0, seed=1), batch(5, 0)
    terms, diag, pseudo = get_method("supervised").loss({"rgb": out}, b, LossConfig(), identity)
    z, y = rows(out.logits), b.y.tolist()
    assert set(terms) == {"sup"} and pseudo is None
    assert terms["sup"].item() == pytest.approx(sum(ref_ce(z[i], y[i]) for i in range(5)) / 5, rel=1e-5)
    argmax = [max(range(K), key=z[i].__getitem__) for i in range(5)]
    assert diag["train_acc"] == pytest.approx(sum(a == t for a, t in zip(argmax, y)) / 5)
    with pytest.raises(ValueError, match="one stream"):
        get_method("supervised").loss({"rgb": out, "tg": out}, b, LossConfig(), identity)


def test_fixmatch_matches_formula_and_uses_threshold_0_3():
    # weak rows just above / below the 0.3 softmax threshold, then clearly confident / unconfident
    weak = [
        one_hot_row(3, 2.2),
        one_hot_row(4, 2.0),
        one_hot_row(5, 6.0),
        one_hot_row(6, 0.5),
        one_hot_row(7, 2.15),
        one_hot_row(8, 2.05),
    ]
    assert p_max_one_hot(2.2) > 0.3 > p_max_one_hot(2.0)
    n_l, n_u = 4, len(weak)
    out, b = stream(n_l, n_u, seed=2, weak=weak), batch(n_l, n_u)
    cfg = LossConfig(unlabeled_weight=2.0)
    terms, diag, pseudo = get_method("fixmatch").loss({"rgb": out}, b, cfg, identity)

    z, y = rows(out.logits), b.y.tolist()
    labels, mask = ref_pseudo(z[n_l : n_l + n_u], 0.3)
    assert mask == [True, False, True, False, True, False]
    assert terms["sup"].item() == pytest.approx(sum(ref_ce(z[i], y[i]) for i in range(n_l)) / n_l, rel=1e-5)
    assert terms["unlabeled"].item() == pytest.approx(2.0 * ref_masked_ce(z[n_l + n_u :], labels, mask), rel=1e-5)
    assert diag["mask_rate"] == pytest.approx(3 / 6) and "pl_acc" not in diag  # the loss sees no hidden label
    assert pseudo.tolist() == [label if m else -1 for label, m in zip(labels, mask)]
    hidden = torch.tensor([3, 4, -1, 6, 0, 8])
    assert pseudo_label_accuracy(pseudo, hidden) == pytest.approx(1 / 2)  # confident & known: 0 (right), 4 (wrong)


def test_fixmatch_unlabeled_loss_is_zero_during_warmup_but_mask_is_logged():
    weak = [one_hot_row(1, 5.0), one_hot_row(2, 0.1)]
    out = stream(3, 2, seed=3, weak=weak)
    terms, diag, _ = get_method("fixmatch").loss({"tg": out}, batch(3, 2, on=False), LossConfig(), identity)
    assert terms["unlabeled"].item() == 0.0
    assert diag["mask_rate"] == pytest.approx(0.5)
    sum(terms.values()).backward()
    assert out.logits.grad[3:].abs().sum() == 0  # unlabeled rows get no gradient


def test_distribution_alignment_takes_confidence_from_the_class_the_batch_overpredicts():
    weak = [one_hot_row(2, 3.0)] * 3 + [one_hot_row(5, 3.0)]
    n_l, n_u = 2, len(weak)
    out, b = stream(n_l, n_u, seed=6, weak=weak), batch(n_l, n_u)
    z = rows(out.logits)
    plain = LossConfig(threshold=0.1)
    aligned = LossConfig(threshold=0.1, distribution_alignment=True)

    _, diag, _ = get_method("fixmatch").loss({"rgb": out}, b, plain, identity)
    assert diag["mask_rate"] == 1.0
    terms, diag, _ = get_method("fixmatch").loss({"rgb": out}, b, aligned, identity)
    labels, mask = ref_aligned_pseudo(weak, 0.1)
    assert mask == [False, False, False, True]  # class 2 fills 3 of 4 clips: its pseudo-labels go
    assert diag["mask_rate"] == pytest.approx(1 / 4)
    assert terms["unlabeled"].item() == pytest.approx(ref_masked_ce(z[n_l + n_u :], labels, mask), rel=1e-5)

    # the mean runs over every rank's clips: with another rank full of class 5, class 5 is the
    # one overpredicted, and the pseudo-labels swap
    other = torch.tensor([one_hot_row(5, 3.0)] * 4).softmax(dim=1)
    terms, diag, _ = get_method("fixmatch").loss({"rgb": out}, b, aligned, lambda t: torch.cat([other, t]))
    labels, mask = ref_aligned_pseudo(weak, 0.1, rows(other))
    assert mask == [True, True, True, False]
    assert terms["unlabeled"].item() == pytest.approx(ref_masked_ce(z[n_l + n_u :], labels, mask), rel=1e-5)


def test_pl_acc_is_nan_without_known_confident_labels():
    out, b = stream(2, 3, seed=4, weak=[one_hot_row(0, 9.0)] * 3), batch(2, 3)
    _, diag, pseudo = get_method("fixmatch").loss({"rgb": out}, b, LossConfig(), identity)
    assert diag["mask_rate"] == 1.0 and math.isnan(pseudo_label_accuracy(pseudo, torch.full((3,), -1)))


# ---- TG-FixMatch ----

# weak (rgb, tg) pairs where "softmax of averaged logits >= 0.3" disagrees with other rules
DISAGREEING_WEAK = [
    (one_hot_row(0, 4.0), one_hot_row(1, 4.0)),  # each stream confident, average split: masked out
    (one_hot_row(2, 1.0), one_hot_row(2, 7.0)),  # rgb alone unconfident, average confident: masked in
    (one_hot_row(3, 3.0), one_hot_row(3, 3.0)),
    (one_hot_row(4, 0.5), one_hot_row(5, 0.2)),
]


def tg_pair(n_l=3, proj_dim=6, weak=DISAGREEING_WEAK):
    n_u = len(weak)
    rgb = stream(n_l, n_u, seed=5, weak=[r for r, _ in weak], proj_dim=proj_dim)
    tg = stream(n_l, n_u, seed=6, weak=[t for _, t in weak], proj_dim=proj_dim)
    return {"rgb": rgb, "tg": tg}, batch(n_l, n_u)


def test_tg_fixmatch_matches_spec_formula():
    out, b = tg_pair()
    n_l, n = b.n_l, b.n_l + b.n_u
    cfg = LossConfig(
        unlabeled_weight=1.5, align_weight=0.7, align_stages=[0, 2, 3], contrast_weight=2.0, temperature=0.4
    )
    terms, diag, _ = get_method("tg_fixmatch").loss(out, b, cfg, identity)
    assert set(terms) == {"sup", "unlabeled", "align", "contrast"}

    z, u, y = rows(out["rgb"].logits), rows(out["tg"].logits), b.y.tolist()
    sup = sum(0.5 * ref_ce(z[i], y[i]) + 0.5 * ref_ce(u[i], y[i]) for i in range(n_l)) / n_l
    averaged = [[(a + c) / 2 for a, c in zip(z[j], u[j])] for j in range(n_l, n)]
    labels, mask = ref_pseudo(averaged, 0.3)
    assert mask == [False, True, True, False]
    # the data really separates averaging logits from other rules
    assert ref_pseudo(z[n_l:n], 0.3)[1] != mask
    mean_probs = [[(p + q) / 2 for p, q in zip(ref_softmax(z[j]), ref_softmax(u[j]))] for j in range(n_l, n)]
    assert [max(p) >= 0.3 for p in mean_probs] != mask
    unl = 0.5 * (ref_masked_ce(z[n:], labels, mask) + ref_masked_ce(u[n:], labels, mask))
    align = sum(ref_align(out["rgb"].features[k][:n], out["tg"].features[k][:n]) for k in (0, 2, 3))
    q, r = ref_unit(rows(out["rgb"].projection)), ref_unit(rows(out["tg"].projection))
    con = 0.5 * (ref_nce(q, r, 0.4) + ref_nce(r, q, 0.4))

    assert terms["sup"].item() == pytest.approx(sup, rel=1e-5)
    assert terms["unlabeled"].item() == pytest.approx(1.5 * unl, rel=1e-5)
    assert terms["align"].item() == pytest.approx(0.7 * align, rel=1e-5)
    assert terms["contrast"].item() == pytest.approx(2.0 * con, rel=1e-5)
    assert diag["mask_rate"] == pytest.approx(0.5)


@pytest.mark.parametrize("source", ["tg", "agree"])
def test_tg_fixmatch_pseudo_labels_from_tg_alone_or_where_both_agree(source):
    # the last pair: a confident TG outvotes an RGB network that favours another class
    out, b = tg_pair(weak=[*DISAGREEING_WEAK, (one_hot_row(6, 1.0), one_hot_row(7, 8.0))])
    n_l, n = b.n_l, b.n_l + b.n_u
    _, diag, pseudo = get_method("tg_fixmatch").loss(out, b, LossConfig(pseudo_labels=source), identity)
    z, u = rows(out["rgb"].logits), rows(out["tg"].logits)
    if source == "tg":
        labels, mask = ref_pseudo(u[n_l:n], 0.3)
    else:
        labels, mask = ref_pseudo([[(a + c) / 2 for a, c in zip(z[j], u[j])] for j in range(n_l, n)], 0.3)
        argmax = [[max(range(K), key=row.__getitem__) for row in net[n_l:n]] for net in (z, u)]
        mask = [m and a == y and c == y for m, y, a, c in zip(mask, labels, *argmax)]
    expected = [y if m else -1 for y, m in zip(labels, mask)]
    assert pseudo.tolist() == expected
    # the rule matters on this data: the paper's averaged vote labels the clips differently
    _, _, mean = get_method("tg_fixmatch").loss(out, b, LossConfig(), identity)
    assert mean.tolist() != expected
    assert diag["mask_rate"] == pytest.approx(sum(mask) / len(mask))


def test_sum_streams_gives_each_network_its_full_cross_entropy():
    out, b = tg_pair()
    n_l, n = b.n_l, b.n_l + b.n_u
    terms, _, _ = get_method("tg_fixmatch").loss(out, b, LossConfig(sum_streams=True), identity)
    z, u, y = rows(out["rgb"].logits), rows(out["tg"].logits), b.y.tolist()
    sup = sum(ref_ce(z[i], y[i]) + ref_ce(u[i], y[i]) for i in range(n_l)) / n_l
    labels, mask = ref_pseudo([[(a + c) / 2 for a, c in zip(z[j], u[j])] for j in range(n_l, n)], 0.3)
    unl = ref_masked_ce(z[n:], labels, mask) + ref_masked_ce(u[n:], labels, mask)
    assert terms["sup"].item() == pytest.approx(sup, rel=1e-5)
    assert terms["unlabeled"].item() == pytest.approx(unl, rel=1e-5)


def test_tg_unlabeled_false_leaves_the_pseudo_labels_to_the_rgb_network():
    out, b = tg_pair()
    n_l, n = b.n_l, b.n_l + b.n_u
    terms, _, pseudo = get_method("tg_fixmatch").loss(out, b, LossConfig(tg_unlabeled=False), identity)
    z, u = rows(out["rgb"].logits), rows(out["tg"].logits)
    labels, mask = ref_pseudo([[(a + c) / 2 for a, c in zip(z[j], u[j])] for j in range(n_l, n)], 0.3)
    assert terms["unlabeled"].item() == pytest.approx(0.5 * ref_masked_ce(z[n:], labels, mask), rel=1e-5)
    assert pseudo.tolist() == [y if m else -1 for y, m in zip(labels, mask)]
    terms["unlabeled"].backward()
    assert out["tg"].logits.grad is None and out["rgb"].logits.grad[n:].abs().sum() > 0


def test_contrast_tg_teaches_moves_only_the_rgb_projection():
    out, b = tg_pair(proj_dim=4)
    cfg = LossConfig(contrast="tg_teaches")
    terms, _, _ = get_method("tg_fixmatch").loss(out, b, cfg, identity)
    q, r = ref_unit(rows(out["rgb"].projection)), ref_unit(rows(out["tg"].projection))
    assert terms["contrast"].item() == pytest.approx(0.5 * (ref_nce(q, r, 0.5) + ref_nce(r, q, 0.5)), rel=1e-5)
    terms["contrast"].backward()
    assert not out["tg"].projection.grad.any()
    # the RGB side gets exactly the gradient it gets from the symmetric term: both halves still reach it
    teach_grad = out["rgb"].projection.grad.clone()
    out["rgb"].projection.grad = None
    get_method("tg_fixmatch").loss(out, b, LossConfig(), identity)[0]["contrast"].backward()
    assert teach_grad.abs().sum() > 0
    assert torch.allclose(teach_grad, out["rgb"].projection.grad)


def test_tg_fixmatch_unlabeled_term_waits_for_warmup_other_terms_do_not():
    out, b = tg_pair()
    b.unlabeled_on = False
    terms, diag, _ = get_method("tg_fixmatch").loss(out, b, LossConfig(), identity)
    assert terms["unlabeled"].item() == 0.0
    assert diag["mask_rate"] == pytest.approx(0.5)
    assert terms["align"].item() > 0 and terms["contrast"].item() > 0


def test_alignment_gradient_reaches_rgb_only():
    out, b = tg_pair()
    n = b.n_l + b.n_u
    terms, _, _ = get_method("tg_fixmatch").loss(out, b, LossConfig(), identity)
    terms["align"].backward()
    for f, g in zip(out["rgb"].features, out["tg"].features):
        assert g.grad is None
        assert f.grad[:n].abs().sum() > 0
        assert f.grad[n:].abs().sum() == 0  # strong clips are not aligned


def test_contrast_has_only_cross_modal_negatives():
    out, b = tg_pair(proj_dim=4)
    # duplicate RGB rows: intra-modal negatives (q_i . q_j) would now include a perfect match
    out["rgb"].projection = out["rgb"].projection.detach()[[0, 0, 1, 1, 2, 2, 3]].clone()
    terms, _, _ = get_method("tg_fixmatch").loss(out, b, LossConfig(), identity)
    q, r = ref_unit(rows(out["rgb"].projection)), ref_unit(rows(out["tg"].projection))
    expected = 0.5 * (ref_nce(q, r, 0.5) + ref_nce(r, q, 0.5))
    assert terms["contrast"].item() == pytest.approx(expected, rel=1e-5)


def test_contrast_gathers_negatives_from_other_ranks(monkeypatch):
    out, b = tg_pair(proj_dim=4)
    n = b.n_l + b.n_u
    other = torch.randn(n, 4, generator=torch.Generator().manual_seed(9))  # rank 0's rows
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    terms, _, _ = get_method("tg_fixmatch").loss(out, b, LossConfig(), lambda t: torch.cat([other, t]))
    q, r = ref_unit(rows(out["rgb"].projection)), ref_unit(rows(out["tg"].projection))
    # the fake gather passes the already normalised rows of this rank after rank 0's raw rows
    other_rows = rows(other)
    expected = 0.5 * (ref_nce(q, other_rows + r, 0.5, offset=n) + ref_nce(r, other_rows + q, 0.5, offset=n))
    assert terms["contrast"].item() == pytest.approx(expected, rel=1e-5)


def test_tg_fixmatch_rejects_bad_outputs():
    out, b = tg_pair()
    with pytest.raises(ValueError, match="'rgb' and 'tg'"):
        get_method("tg_fixmatch").loss({"rgb": out["rgb"]}, b, LossConfig(), identity)
    out["tg"].features[1] = out["tg"].features[1][:, :, :1]
    with pytest.raises(ValueError, match="stage 1"):
        get_method("tg_fixmatch").loss(out, b, LossConfig(), identity)
    out, b = tg_pair()
    out["tg"].projection = None
    with pytest.raises(ValueError, match="projection"):
        get_method("tg_fixmatch").loss(out, b, LossConfig(), identity)
    b.n_u = 2  # row count no longer matches
    with pytest.raises(ValueError, match="rows"):
        get_method("tg_fixmatch").loss(out, b, LossConfig(), identity)


@pytest.mark.parametrize("name", ["supervised", "fixmatch", "tg_fixmatch"])
@pytest.mark.parametrize("small_cpu_loss", [False, True])
def test_every_parameter_gets_gradient_from_a_real_step(name, small_cpu_loss):
    """What DDP without find_unused_parameters needs: each trained weight is used by the loss, also
    with small_cpu's TG-FixMatch loss (TG side of the contrast detached, no TG pseudo-label loss)."""
    torch.manual_seed(0)
    method = get_method(name)
    streams = ("rgb", "tg") if name == "tg_fixmatch" else ("tg",)
    model = create_model(ModelConfig(width=4, projection_dim=8), K, streams, method.needs_projection)
    n_l, n_u = 2, (2 if method.uses_unlabeled else 0)
    b = Batch(y=torch.tensor([1, 2]), n_l=n_l, n_u=n_u, unlabeled_on=True)
    clips = torch.randn(n_l + 2 * n_u, 3, 2, 16, 16).to(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model({s: clips for s in streams}, n_project=(n_l + n_u) * method.needs_projection)
    cfg = LossConfig(threshold=0.0)  # every pseudo-label counts
    if small_cpu_loss:
        cfg = cfg.model_copy(update={"contrast": "tg_teaches", "tg_unlabeled": False})
    terms, diag, _ = method.loss(out, b, cfg, identity)
    total = sum(terms.values())
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    if method.uses_unlabeled:
        assert diag["mask_rate"] == 1.0


def test_method_registry():
    assert list(METHODS) == ["supervised", "fixmatch", "tg_fixmatch"]  # table order
    assert [(m.label, m.role, m.uses_unlabeled, m.needs_projection) for m in METHODS.values()] == [
        ("Supervised", "Supervised", False, False),
        ("FixMatch", "Baseline", True, False),
        ("TG-FixMatch", "Ours", True, True),
    ]
    assert [m.streams_for("tg") for m in METHODS.values()] == [("tg",), ("tg",), ("rgb", "tg")]
    with pytest.raises(ArgumentError, match="tg_fixmatch"):  # a TgsemiError: the CLI prints it, no traceback
        get_method("mean_teacher")
    with pytest.raises(ValueError, match="already registered"):
        register(METHODS["fixmatch"])


@pytest.fixture
def toy() -> list[list[str]]:
    """A method added through the registry alone (no file of the package names it), removed after the
    test; yields the streams each call of its loss received."""
    seen: list[list[str]] = []

    def toy_loss(out, batch, cfg, gather):
        seen.append(sorted(out))
        labeled, _, _ = split(out["rgb"].logits.float(), batch)
        terms = {"sup": F.cross_entropy(labeled, batch.y, label_smoothing=0.1)}
        return terms, {"train_acc": accuracy(labeled, batch.y)}, None

    register(Method(name="toy", label="Toy", role="Supervised", loss=toy_loss, streams=("rgb",)))
    yield seen
    del METHODS["toy"]


def test_a_registered_method_is_valid_in_the_config_and_trains(toy, tiny_root, tmp_path):
    cfg = load_config(
        "synthetic_tiny", [f"data.root={tiny_root}", "method=toy", "train.max_steps=2", "model.modality=tg"]
    )
    assert cfg.streams() == ("rgb",)  # the method's streams win over model.modality
    train(cfg, tmp_path)
    assert toy == [["rgb"], ["rgb"]]
    assert checkpoint.load(tmp_path)["position"]["step"] == 2


def test_an_unregistered_method_is_a_config_error_listing_the_registered_ones():
    with pytest.raises(
        ConfigError,
        match=r"(?m)^  method: .*unknown method 'toy'; choose from supervised, "
        r"fixmatch, tg_fixmatch$",
    ):
        load_config(None, ["method=toy"])


# ---- differentiable all-gather ----


def test_all_gather_single_process_is_identity_with_gradient():
    t = torch.randn(3, 4, requires_grad=True)
    g = all_gather_with_grad(t)
    assert torch.equal(g, t)
    w = torch.randn(3, 4)
    (g * w).sum().backward()
    assert torch.equal(t.grad, w)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)


def _rows_of(rank):
    return torch.arange(6.0).reshape(2, 3) + 10 * rank


def _weights_of(rank):
    return torch.arange(12.0).reshape(4, 3) * (rank + 1)


def _gather_worker(rank, world, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        t = _rows_of(rank).requires_grad_()
        gathered = all_gather_with_grad(t)
        assert torch.equal(gathered, torch.cat([_rows_of(r) for r in range(world)]))
        (gathered * _weights_of(rank)).sum().backward()  # each rank's loss touches every rank's rows
        expected = sum(_weights_of(r) for r in range(world))[2 * rank : 2 * rank + 2]
        assert torch.equal(t.grad, expected), (rank, t.grad, expected)
    finally:
        dist.destroy_process_group()


def test_all_gather_with_grad_two_processes(tmp_path):
    mp.spawn(_gather_worker, args=(2, str(tmp_path / "store")), nprocs=2, join=True)
