"""The training engine: one loop for every method.

An epoch is one pass over the unlabeled pool; the labeled loader cycles and
reshuffles on every pass. The loop knows nothing about losses: it builds the
batched inputs ``[labeled | weak | strong]`` per stream, runs the model once,
hands the outputs to ``method.loss`` and steps the optimiser. Everything that
decides the next step (weights, optimiser, step, data position, RNG) is in the
checkpoint, so a resumed run on CPU ends with bit-identical weights.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from tgsemi import checkpoint, cpus, distributed
from tgsemi.config import Config, config_changes, config_from_dict, save_config
from tgsemi.data import bad_inputs
from tgsemi.data.bad_inputs import BadInputs
from tgsemi.data.batch_aug import StrongViews
from tgsemi.data.build import Splits, build_splits
from tgsemi.data.datasets import EpochSampler, EvalDataset, FrameCache, LabeledDataset, UnlabeledDataset
from tgsemi.errors import ConfigError, NonFiniteLossError
from tgsemi.evaluate import autocast, evaluate, to_device
from tgsemi.methods import Batch, Method, get_method
from tgsemi.models import TwoStream, create_model
from tgsemi.models.r3d import bn_groups, split_batchnorm
from tgsemi.models.sync_bn import convert_sync_batchnorm

log = logging.getLogger(__name__)


@dataclass
class Position:
    """Where the data streams are: restored from a checkpoint to resume exactly."""

    step: int = 0
    epoch: int = 0
    epoch_batches: int = 0  # unlabeled batches consumed in this epoch
    labeled_pass: int = 0
    labeled_batches: int = 0  # labeled batches consumed in this pass


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", distributed.local_rank())
    return torch.device("cpu")


def lr_at(step: int, cfg: Config, steps_per_epoch: int, world: int) -> float:
    """The lr of ``step`` (0-based), scaled with the global labeled batch.

    ``warmup_cosine``: linear warm-up from 0.1x, then a per-step cosine to 0 over the
    remaining steps. ``mmcv_cosine`` (the reference): a cosine over all epochs that
    changes at epoch boundaries, times the linear warm-up factor 1 - (1 - i / W) * 0.9
    during the W warm-up iterations, so it peaks below the base lr.
    """
    base = cfg.train.lr * cfg.train.batch_size * world / cfg.train.base_batch_size
    warm = cfg.train.warmup_epochs * steps_per_epoch
    if cfg.train.lr_schedule == "mmcv_cosine":
        lr = base * 0.5 * (1 + math.cos(math.pi * (step // steps_per_epoch) / cfg.train.epochs))
        return lr * (1 - (1 - step / warm) * 0.9) if step < warm else lr
    total = max(int(cfg.train.epochs * steps_per_epoch), 1)
    warm = int(warm)
    if step < warm:
        return base * (0.1 + 0.9 * step / warm)
    return base * 0.5 * (1 + math.cos(math.pi * min(step - warm, total - warm) / max(total - warm, 1)))


class Loaders:
    """Seeded, resumable loaders; item randomness comes from the sampler (see datasets.py)."""

    def __init__(self, cfg: Config, splits: Splits, bad: BadInputs, streams: tuple[str, ...], workers: int):
        d, t = cfg.data, cfg.train
        self.cfg, self.world, self.rank = cfg, distributed.world_size(), distributed.rank()
        self.workers = workers  # data.num_workers resolved (cpus.plan)
        common = dict(clip_len=d.clip_len, frame_interval=d.frame_interval, backend=d.backend, bad=bad,
                      allow_outside_root=d.allow_outside_root)
        labeled = splits.labeled * math.ceil(t.batch_size * self.world / max(len(splits.labeled), 1))
        # one cache: the labeled videos are in the unlabeled pool too
        train_aug = dict(resize=d.resize, crop=d.crop, crop_area=d.crop_area,
                         cache=FrameCache() if d.cache_frames else None)
        self.labeled = LabeledDataset(d.root, labeled, **train_aug, **common)
        self.unlabeled = UnlabeledDataset(d.root, splits.unlabeled, strong_aug=d.strong_aug,
                                          strong_level=d.strong_level, tg_fill=d.tg_fill,
                                          strong_ops_tg=d.strong_ops_tg, strong_on=d.strong_on, **train_aug,
                                          **common)
        # strong_on=batch: the unlabeled batch's strong views are built on the training device
        self.strong_views = StrongViews(streams, d.strong_level, d.tg_fill, d.strong_ops_tg, cfg.seed,
                                        self.rank) if d.strong_on == "batch" else None
        self.test = EvalDataset(d.root, splits.test, num_clips=1, num_crops=1, resize=d.resize, crop=d.crop, **common)
        self.train_eval = EvalDataset(d.root, splits.train, num_clips=1, num_crops=1, resize=d.resize, crop=d.crop,
                                      **common) if t.precise_bn_data == "train" else None
        self.b_u = t.batch_size * t.mu
        self.steps_per_epoch = max(len(self.unlabeled) // (max(self.b_u, t.batch_size) * self.world), 1)

    def loader(self, dataset, batch: int, stream: int, epoch: int, start_batch: int) -> DataLoader:
        sampler = EpochSampler(len(dataset), self.cfg.seed, epoch, start_batch * batch, rank=self.rank,
                               world_size=self.world, stream=stream)
        gen = torch.Generator().manual_seed(self.cfg.seed)  # keeps the global RNG untouched by workers
        return DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True, generator=gen,
                          num_workers=self.workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=False)

    def precise_bn_batches(self) -> Iterator[dict]:
        """Batches BN statistics are recomputed on: labeled clips with training augmentation, or
        (``precise_bn_data: train``, the reference) the whole train split through the validation
        pipeline, in one seeded order sharded over ranks. Each call starts that order again, so
        every PreciseBN reads the same clips, as the reference's never re-seeded sampler does."""
        if self.train_eval is None:
            yield from self.loader(self.labeled, self.cfg.train.batch_size, 2, 0, 0)
            return
        sampler = EpochSampler(len(self.train_eval), self.cfg.seed, stream=2, rank=self.rank, world_size=self.world)
        indices = [i for i, _ in sampler]  # the validation pipeline draws nothing: the item seeds go unused
        loader = DataLoader(self.train_eval, batch_size=self.cfg.train.batch_size, sampler=indices, drop_last=True,
                            num_workers=self.workers)
        for batch in loader:  # one view per clip: (B, 1, C, T, H, W) -> (B, C, T, H, W)
            yield {k: v[:, 0] if k in ("rgb", "tg") else v for k, v in batch.items()}

    def on_device(self, lab: dict, unl: dict | None, device: torch.device, step: int) -> tuple[dict, dict | None]:
        """The step's batches on the training device, each view copied as the loader pinned it
        (``model_inputs`` joins them there); with ``strong_on=batch`` the strong views are built there."""
        lab = {k: v.to(device, non_blocking=True) for k, v in lab.items()}
        if unl is None:
            return lab, None
        if self.strong_views is not None:
            return lab, self.strong_views(unl, device, step)
        return lab, {k: v.to(device, non_blocking=True) for k, v in unl.items()}

    def labeled_batches(self, pos: Position) -> Iterator[dict]:
        """Endless: a new shuffled pass whenever one ends."""
        while True:
            for batch in self.loader(self.labeled, self.cfg.train.batch_size, 0, pos.labeled_pass,
                                      pos.labeled_batches):
                pos.labeled_batches += 1
                yield batch
            pos.labeled_pass, pos.labeled_batches = pos.labeled_pass + 1, 0

    def unlabeled_batches(self, pos: Position) -> Iterator[dict | None]:
        """One epoch's unlabeled batches (``None`` for methods without unlabeled data)."""
        if self.b_u == 0:
            yield from (None for _ in range(pos.epoch_batches, self.steps_per_epoch))
            return
        loader = self.loader(self.unlabeled, self.b_u, 1, pos.epoch, pos.epoch_batches)
        for _, batch in zip(range(pos.epoch_batches, self.steps_per_epoch), loader):
            yield batch


def model_inputs(method: Method, streams: tuple[str, ...], lab: dict, unl: dict | None) -> dict[str, torch.Tensor]:
    """Per stream: ``cat(labeled, weak, strong)`` so BN statistics mix all clips (docs/method.md section 3)."""
    if unl is None or not method.uses_unlabeled:
        return {s: lab[s] for s in streams}
    return {s: torch.cat([lab[s], unl[f"{s}_w"], unl[f"{s}_s"]]) for s in streams}


@torch.no_grad()
def precise_bn(net: nn.Module, loader: Iterable[dict], modality: str, device: torch.device, batches: int,
               channels_last: bool) -> int:
    """Recompute BN running statistics as exact averages over up to ``batches`` batches
    (the running averages lag behind weights that changed during training); returns
    the number of clips this rank used."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or batches == 0:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    net.train()
    clips = 0
    for _, batch in zip(range(batches), loader):
        net(to_device(batch[modality], device, channels_last))
        clips += len(batch[modality])
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
        if distributed.world_size() > 1:  # every rank ends with the same statistics
            for buf in (m.running_mean, m.running_var):
                torch.distributed.all_reduce(buf)
                buf /= distributed.world_size()
    return clips


class MetricsLog:
    """``metrics.jsonl`` (+ TensorBoard). On resume, lines the resumed run will
    write again are dropped so no step appears twice."""

    def __init__(self, run_dir: Path, resume_step: int, enabled: bool):
        self.enabled, self.path = enabled, run_dir / "metrics.jsonl"
        if not enabled:
            return
        if self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines() if _kept(ln, resume_step)]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(ln + "\n" for ln in kept))
            tmp.replace(self.path)  # a kill right now must not empty the log
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(run_dir / "tb", purge_step=resume_step + 1 if resume_step else None)

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        clean = {k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in values.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.enabled:
            self.tb.close()


def _kept(line: str, resume_step: int) -> bool:
    """Whether a metrics line survives a resume at ``resume_step``: training records
    up to that step; evaluation records only before it, because the resumed run
    evaluates at that step again (end of epoch, or the final evaluation)."""
    try:
        record = json.loads(line)
        step = int(record["step"])
    except (ValueError, KeyError, TypeError):
        return False  # a torn last line from a killed run
    return step < resume_step or (step == resume_step and "loss" in record)


def train_step(model: nn.Module, method: Method, inputs: dict[str, torch.Tensor], batch: Batch,
               optimizer: torch.optim.Optimizer, cfg: Config, amp: bool, device: torch.device
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
    """Forward all clips once per stream, the method's losses, backward, clip, step.

    A step whose loss has a non-finite term is not applied (the caller decides
    whether to stop or go on). Returns the loss, its terms (detached) and diagnostics.
    """
    model.train()
    groups = bn_groups(cfg.train.split_bn, batch.n_l, batch.n_u)
    with autocast(device, amp), split_batchnorm(model, groups, stats_rows=batch.n_l + batch.n_u):
        out = model(inputs, n_project=batch.n_l + batch.n_u if method.needs_projection else 0)
    terms, diag = method.loss(out, batch, cfg.loss, distributed.all_gather_with_grad)
    loss = sum(terms.values())
    optimizer.zero_grad(set_to_none=True)
    finite = torch.stack([v.detach().float() for v in terms.values()]).isfinite().all().float()
    if distributed.world_size() > 1:  # every rank must skip together, or DDP's all-reduce hangs
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    if finite:
        loss.backward()
        if cfg.train.clip_grad_norm:
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                     cfg.train.clip_grad_norm)
        optimizer.step()
    return loss.detach(), {k: v.detach() for k, v in terms.items()}, diag


def train(cfg: Config, run_dir: str | Path) -> TwoStream:
    """Train (or resume) the run in ``run_dir``; returns the trained networks
    (also saved as ``run_dir/checkpoints/last.pt``)."""
    run_dir = Path(run_dir)
    distributed.setup()
    device = pick_device(cfg.train.device)
    # threads leave the workers their CPUs, counted under a container's quota: oversubscribed
    # small convs run several times slower, and threads throttled by a quota stall together
    budget = cpus.plan(cfg.train.cpus, cfg.data.num_workers, cfg.data.cache_frames)
    torch.set_num_threads(budget.threads)  # PyTorch's own count under OMP_NUM_THREADS
    main = distributed.is_main()
    ckpt_dir = run_dir / "checkpoints"
    resume = checkpoint.load(ckpt_dir / checkpoint.LAST) if (ckpt_dir / checkpoint.LAST).exists() else None
    if resume is not None and (changed := config_changes(config_from_dict(resume["config"]), cfg)):
        # resuming would mix two recipes in one set of weights, under the new config.yaml
        raise ConfigError(f"{ckpt_dir / checkpoint.LAST} was trained with other settings ({'; '.join(changed)}): "
                          f"run the same command to resume it, or give a new --out "
                          f"(or delete {ckpt_dir} to train this run again)")
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")

    torch.manual_seed(cfg.seed)
    method = get_method(cfg.method)
    streams = cfg.streams()
    splits = build_splits(cfg.data, cfg.seed)
    bad = BadInputs(cfg.data.max_bad_fraction, run_dir / "bad_inputs.jsonl")
    loaders = Loaders(cfg, splits, bad, streams, budget.workers)
    if not method.uses_unlabeled:
        loaders.b_u = 0
    num_classes = len(splits.class_names)

    net = create_model(cfg.model, num_classes, streams, method.needs_projection).to(device)
    amp = cfg.train.amp == "bf16" or (cfg.train.amp == "auto" and device.type == "cuda")
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    if distributed.world_size() > 1 and cfg.train.sync_bn:
        net = convert_sync_batchnorm(net, device)
    if main:
        bn = {type(m).__name__ for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        log.info("%s: %s on %s, %d process(es), BatchNorm: %s, PreciseBN: %d batches of the %s clips, "
                 "%d CPU(s) per process (%s), %d intra-op thread(s) (%s), %d loader worker(s)",
                 run_dir, cfg.method, device, distributed.world_size(), ", ".join(sorted(bn)),
                 cfg.train.precise_bn_batches, cfg.train.precise_bn_data, budget.cpus, budget.source,
                 budget.threads, budget.threads_source, budget.workers)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum,
                                weight_decay=cfg.train.weight_decay, fused=device.type == "cuda")
    pos = Position()
    if resume is not None:
        net.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        pos = Position(**resume["position"])
        checkpoint.set_rng_state(resume["rng"][distributed.rank()] if isinstance(resume["rng"], list)
                                 else resume["rng"])
        log.info("resuming %s at step %d", run_dir, pos.step)
    model: nn.Module = net
    if distributed.world_size() > 1:
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        model = torch.compile(model)

    spe = loaders.steps_per_epoch
    total = int(cfg.train.epochs * spe)
    if cfg.train.max_steps is not None:
        total = min(total, cfg.train.max_steps)
    if pos.step >= total:  # finished already: re-running the command changes nothing
        return net
    metrics = MetricsLog(run_dir, pos.step, main)
    bar = tqdm(total=total, initial=pos.step, desc=f"{cfg.method}", disable=not (main and cfg.train.progress),
               dynamic_ncols=True)
    labeled = loaders.labeled_batches(pos)
    t_last = time.perf_counter()

    def save_ckpt() -> None:
        rngs = distributed.all_gather_object(checkpoint.rng_state())
        if main:
            checkpoint.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                             "position": vars(pos).copy(), "rng": rngs, "config": cfg.model_dump(),
                             "class_names": splits.class_names, "scaler": None},
                            ckpt_dir, pos.step, cfg.train.keep_last)
        distributed.barrier()

    while pos.step < total:
        for unl in loaders.unlabeled_batches(pos):
            if pos.step >= total:
                break
            lab = next(labeled)
            lr = lr_at(pos.step, cfg, spe, distributed.world_size())
            for group in optimizer.param_groups:
                group["lr"] = lr
            lab, unl = loaders.on_device(lab, unl, device, pos.step)
            inputs = {s: to_device(x, device, cfg.train.channels_last)
                      for s, x in model_inputs(method, streams, lab, unl).items()}
            n_l = lab["label"].shape[0]
            n_u = unl["label"].shape[0] if unl is not None and method.uses_unlabeled else 0
            batch = Batch(y=lab["label"].to(device), n_l=n_l, n_u=n_u,
                          y_u=unl["label"].to(device) if n_u else None,
                          unlabeled_on=pos.step / spe >= cfg.loss.unlabeled_warmup_epochs)
            loss, terms, diag = train_step(model, method, inputs, batch, optimizer, cfg, amp, device)
            bad_terms = [k for k, v in terms.items() if not torch.isfinite(v)]
            if bad_terms:
                if cfg.train.on_nonfinite == "stop":  # step numbers are 1-based, as in metrics.jsonl
                    raise NonFiniteLossError(
                        f"non-finite loss at step {pos.step + 1} in term(s) {', '.join(bad_terms)}; "
                        f"the last good checkpoint in {ckpt_dir} is intact (train.on_nonfinite=skip skips such steps)")
                log.warning("skipped step %d: non-finite loss term(s) %s", pos.step + 1, bad_terms)
            pos.step += 1
            pos.epoch_batches += 1
            bar.update(1)
            if pos.step % cfg.train.log_every_steps == 0 or pos.step == total:
                values = {f"loss/{k}": float(v) for k, v in terms.items()}
                values.update({"loss": float(loss), "lr": lr, "epoch": pos.step / spe, **diag})
                dt = time.perf_counter() - t_last
                values["sec_per_step"] = dt / cfg.train.log_every_steps
                t_last = time.perf_counter()
                metrics.write(pos.step, values)
                bar.set_postfix({k: f"{values[k]:.3g}" for k in ("loss", "mask_rate", "train_acc") if k in values})
            if pos.step % cfg.train.ckpt_every_steps == 0 and pos.step < total:
                save_ckpt()
        else:
            pos.epoch, pos.epoch_batches = pos.epoch + 1, 0
            if pos.epoch % max(int(cfg.train.eval_every_epochs), 1) == 0 and pos.step < total:
                metrics.write(pos.step, validate(net, loaders, cfg, device, amp))
            if cfg.train.ckpt_every_epochs and pos.epoch % cfg.train.ckpt_every_epochs == 0 and pos.step < total:
                save_ckpt()
    bar.close()
    metrics.write(pos.step, validate(net, loaders, cfg, device, amp))
    save_ckpt()
    if main:
        (run_dir / "bad_inputs.json").write_text(json.dumps(bad_inputs.collect(bad.log_path), indent=1))
    metrics.close()
    return net


def validate(net: TwoStream, loaders: Loaders, cfg: Config, device: torch.device, amp: bool) -> dict:
    """PreciseBN, then 1-clip centre-crop accuracy of every stream. Runs under a
    forked RNG so that evaluating never changes the training that follows."""
    out = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for s, stream_net in net.nets.items():
            clips = precise_bn(stream_net, loaders.precise_bn_batches(), s, device, cfg.train.precise_bn_batches,
                               cfg.train.channels_last)
            out[f"precise_bn/{s}/clips"] = clips * distributed.world_size()
            res = evaluate(stream_net, loaders.test, s, stream_net.fc.out_features, device,
                           cfg.eval.batch_size, loaders.workers, amp, cfg.train.channels_last)
            out.update({f"val/{s}/{k}": v for k, v in res.items() if k != "confusion"})
    return out
