"""The training engine: one loop for every method.

An epoch is one pass over the unlabeled pool; the labeled loader cycles and
reshuffles on every pass. The loop knows nothing about losses: it builds the
batched inputs ``[labeled | weak | strong]`` per stream, runs the model once,
hands the outputs to ``method.loss`` and steps the optimiser. Everything that
decides the next step (weights, optimiser, ``Position``, RNG) is in the
checkpoint, so a resumed run on CPU ends with bit-identical weights.

``train`` reads as torchvision's ``train_one_epoch``: ``setup`` builds or restores
the run, ``one_step`` trains a step, ``save_checkpoint`` and ``TrainLog`` record it,
and only the loop advances the ``Position``.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from tgsemi import checkpoint, cpus, distributed, runlock, stopping
from tgsemi.config import Config, config_changes, config_from_dict, config_yaml, flat_config, save_config
from tgsemi.data import bad_inputs
from tgsemi.data.bad_inputs import BadInputs
from tgsemi.data.batch_aug import StrongViews
from tgsemi.data.build import Splits, build_splits
from tgsemi.data.check import preflight
from tgsemi.data.datasets import (
    EpochSampler,
    EvalDataset,
    FrameCache,
    LabeledDataset,
    UnlabeledDataset,
    strong_options,
)
from tgsemi.data.video import Decoding
from tgsemi.errors import CheckpointError, ConfigError, NonFiniteLossError, RunInterrupted
from tgsemi.evaluate import evaluate
from tgsemi.methods import Batch, Method, get_method
from tgsemi.methods.base import pseudo_label_accuracy
from tgsemi.models import TwoStream, create_model
from tgsemi.models.r3d import bn_groups
from tgsemi.models.sync_bn import convert_sync_batchnorm
from tgsemi.outputs import writing
from tgsemi.runfiles import RunPaths, read_metrics, trained_on
from tgsemi.runtime import autocast, pick_device, to_device, use_amp

log = logging.getLogger(__name__)


@dataclass
class Position:
    """Where training is: restored from a checkpoint to resume exactly, advanced by the loop alone."""

    step: int = 0
    epoch: int = 0
    epoch_batches: int = 0  # unlabeled batches consumed in this epoch
    labeled_pass: int = 0
    labeled_batches: int = 0  # labeled batches consumed in this pass
    best_top1: float = -1.0  # the best validation top-1 of the inference stream so far (best.pt)

    def advance(self, labeled_at: tuple[int, int]) -> None:
        """A step is done; ``labeled_at`` is where its labeled batch left that stream (pass, batches)."""
        self.step += 1
        self.epoch_batches += 1
        self.labeled_pass, self.labeled_batches = labeled_at

    def next_epoch(self) -> None:
        self.epoch, self.epoch_batches = self.epoch + 1, 0


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

    def __init__(
        self, cfg: Config, splits: Splits, bad: BadInputs, streams: tuple[str, ...], workers: int, uses_unlabeled: bool
    ):
        d, t = cfg.data, cfg.train
        self.cfg, self.streams, self.world, self.rank = cfg, streams, distributed.world_size(), distributed.rank()
        self.workers = workers  # data.num_workers resolved (cpus.plan)
        common = dict(
            clip_len=d.clip_len,
            frame_interval=d.frame_interval,
            backend=Decoding.of(d),  # the backend, input guards and decode-time short side
            bad=bad,
            allow_outside_root=d.allow_outside_root,
        )
        labeled = splits.labeled * math.ceil(t.batch_size * self.world / max(len(splits.labeled), 1))
        # one cache: the labeled videos are in the unlabeled pool too
        train_aug = dict(
            resize=d.resize,
            crop=d.crop,
            crop_area=d.crop_area,
            hue_jitter=d.hue_jitter,
            cache=FrameCache() if d.cache_frames else None,
        )
        self.labeled = LabeledDataset(d.root, labeled, **train_aug, **common)
        self.unlabeled = UnlabeledDataset(
            d.root,
            splits.unlabeled,
            **strong_options(d),
            **train_aug,
            **common,
        )
        # strong_on=batch: the unlabeled batch's strong views are built on the training device
        self.strong_views = (
            StrongViews(streams, d.strong_level, d.tg_fill, d.strong_ops_tg, cfg.seed, self.rank)
            if d.strong_on == "batch"
            else None
        )
        self.test = EvalDataset(d.root, splits.test, num_clips=1, num_crops=1, resize=d.resize, crop=d.crop, **common)
        self.train_eval = (
            EvalDataset(d.root, splits.train, num_clips=1, num_crops=1, resize=d.resize, crop=d.crop, **common)
            if t.precise_bn_data == "train"
            else None
        )
        # an epoch has as many steps for every method: one pass over the pool in batches of B x mu
        self.steps_per_epoch = max(len(self.unlabeled) // (max(t.batch_size * t.mu, t.batch_size) * self.world), 1)
        self.b_u = t.batch_size * t.mu if uses_unlabeled else 0

    def loader(self, dataset, batch: int, stream: int, epoch: int, start_batch: int) -> DataLoader:
        sampler = EpochSampler(
            len(dataset),
            self.cfg.seed,
            epoch,
            start_batch * batch,
            rank=self.rank,
            world_size=self.world,
            stream=stream,
        )
        gen = torch.Generator().manual_seed(self.cfg.seed)  # keeps the global RNG untouched by workers
        return DataLoader(
            dataset,
            batch_size=batch,
            sampler=sampler,
            drop_last=True,
            generator=gen,
            num_workers=self.workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )

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
        loader = DataLoader(
            self.train_eval,
            batch_size=self.cfg.train.batch_size,
            sampler=indices,
            drop_last=True,
            num_workers=self.workers,
        )
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

    def step_inputs(
        self, lab: dict, unl: dict | None, device: torch.device, step: int, unlabeled_on: bool
    ) -> tuple[dict[str, torch.Tensor], Batch, torch.Tensor | None]:
        """What step ``step`` (0-based) trains on: the model's input per stream, the loss's view of
        the clips (``unlabeled_on``: the unlabeled loss counts) and, kept from the loss, the hidden
        labels of the unlabeled clips (-1: unknown; None without unlabeled clips) that score its
        pseudo-labels."""
        lab, unl = self.on_device(lab, unl, device, step)
        inputs = {
            s: to_device(x, device, self.cfg.train.channels_last)
            for s, x in model_inputs(self.streams, lab, unl).items()
        }
        n_u = 0 if unl is None else unl["label"].shape[0]
        batch = Batch(y=lab["label"].to(device), n_l=lab["label"].shape[0], n_u=n_u, unlabeled_on=unlabeled_on)
        return inputs, batch, unl["label"].to(device) if n_u else None

    def labeled_batches(self, labeled_pass: int, done: int) -> Iterator[tuple[tuple[int, int], dict]]:
        """Endless, from batch ``done`` of pass ``labeled_pass`` on: a new shuffled pass whenever one
        ends. Each batch comes with where it leaves the labeled stream: (pass, batches read in it)."""
        while True:
            for batch in self.loader(self.labeled, self.cfg.train.batch_size, 0, labeled_pass, done):
                done += 1
                yield (labeled_pass, done), batch
            labeled_pass, done = labeled_pass + 1, 0

    def unlabeled_batches(self, epoch: int, done: int) -> Iterator[dict | None]:
        """The rest of epoch ``epoch``'s unlabeled batches after the first ``done``
        (``None`` for methods without unlabeled data)."""
        if self.b_u == 0:
            yield from (None for _ in range(done, self.steps_per_epoch))
            return
        loader = self.loader(self.unlabeled, self.b_u, 1, epoch, done)
        for _, batch in zip(range(done, self.steps_per_epoch), loader):
            yield batch


def model_inputs(streams: tuple[str, ...], lab: dict, unl: dict | None) -> dict[str, torch.Tensor]:
    """Per stream: ``cat(labeled, weak, strong)`` so BN statistics mix all clips (docs/method.md section 3)."""
    if unl is None:
        return {s: lab[s] for s in streams}
    return {s: torch.cat([lab[s], unl[f"{s}_w"], unl[f"{s}_s"]]) for s in streams}


@torch.no_grad()
def precise_bn(
    net: nn.Module, loader: Iterable[dict], modality: str, device: torch.device, batches: int, channels_last: bool
) -> int:
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


@dataclass(frozen=True)
class Training:
    """What ``setup`` builds for a run. Training changes the weights and the optimiser's state
    in place; what else changes is the ``Position``, which the loop keeps."""

    cfg: Config
    paths: RunPaths
    method: Method
    loaders: Loaders
    net: TwoStream  # the networks: saved, evaluated and returned
    model: nn.Module  # what a step runs: ``net``, wrapped for DDP and compiled if asked
    optimizer: torch.optim.Optimizer
    device: torch.device
    amp: bool
    class_names: list[str]
    total: int  # the step training ends at


class StepResult(NamedTuple):
    """One step's outcome, kept as tensors: ``TrainLog`` reads them out only on the steps it records."""

    lr: float
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]  # detached
    diagnostics: dict[str, torch.Tensor]  # read out only on the steps TrainLog records


class TrainLog:
    """``metrics.jsonl``, TensorBoard and the progress bar (on the main process). On resume, lines
    the resumed run will write again are dropped so no step appears twice."""

    def __init__(self, t: Training, pos: Position):
        self.enabled, self.path, self.cfg, self.total = distributed.is_main(), t.paths.metrics, t.cfg, t.total
        self.steps_per_epoch = t.loaders.steps_per_epoch
        self.bar = tqdm(
            total=t.total,
            initial=pos.step,
            desc=t.cfg.method,
            dynamic_ncols=True,
            disable=not (self.enabled and t.cfg.train.progress),
        )
        if self.enabled:
            if self.path.exists():
                kept = [r for r in read_metrics(self.path) if _kept(r, pos.step)]
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                tmp.replace(self.path)  # a kill right now must not empty the log
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(t.paths.tensorboard, purge_step=pos.step + 1 if pos.step else None)
            self.tb.add_text("config", "    " + config_yaml(t.cfg).replace("\n", "\n    "), pos.step)  # as code
        self.t_last = time.perf_counter()

    def step(self, pos: Position, r: StepResult) -> None:
        """Count the step; every ``train.log_every_steps`` steps and at the last one, record it."""
        self.bar.update(1)
        every = self.cfg.train.log_every_steps
        if pos.step % every and pos.step != self.total:
            return
        tensors = {**{f"loss/{k}": v for k, v in r.terms.items()}, "loss": r.loss, **r.diagnostics}
        values = dict(zip(tensors, torch.stack([v.float() for v in tensors.values()]).tolist()))  # one sync
        values.update({"lr": r.lr, "epoch": pos.step / self.steps_per_epoch})
        now = time.perf_counter()
        values["sec_per_step"] = (now - self.t_last) / every
        self.t_last = now
        self.write(pos.step, values)
        self.bar.set_postfix({k: f"{values[k]:.3g}" for k in ("loss", "mask_rate", "train_acc") if k in values})

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        clean = {k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in values.items()}
        with writing(self.path), open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        with writing(self.tb.log_dir):  # TensorBoard's writer thread reports its failures here
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def hparams(self, final: dict) -> None:
        """The run's settings beside its final validation, for TensorBoard's HParams comparison."""
        if not self.enabled:
            return
        flat = flat_config(self.cfg)
        scalars = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
        metrics = {f"final/{k}": v for k, v in final.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        with writing(self.tb.log_dir):
            self.tb.add_hparams(scalars, metrics, run_name="hparams")

    def close(self) -> None:
        """Idempotent: tqdm and SummaryWriter both ignore a second close."""
        self.bar.close()
        if self.enabled:
            with writing(self.tb.log_dir):
                self.tb.close()


def _kept(record: dict, resume_step: int) -> bool:
    """Whether a metrics record survives a resume at ``resume_step``: training records
    up to that step; evaluation records only before it, because the resumed run
    evaluates at that step again (before its next step, or the final evaluation)."""
    step = record.get("step")
    return isinstance(step, int) and (step < resume_step or (step == resume_step and "loss" in record))


def train_step(
    model: nn.Module,
    method: Method,
    inputs: dict[str, torch.Tensor],
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    cfg: Config,
    amp: bool,
    device: torch.device,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor | None, list[str]]:
    """Forward all clips once per stream, the method's losses, backward, clip, step.

    A step whose loss has a non-finite term is not applied (the caller decides whether to stop or
    go on). Returns the loss, its terms and diagnostics (detached scalar tensors), the method's
    pseudo-labels (None if it has none) and the names of this rank's non-finite terms. Whether to
    apply the step is the one value it waits for the device to compute: everything else stays a
    tensor until ``TrainLog`` records a step.
    """
    model.train()
    groups = bn_groups(cfg.train.split_bn, batch.n_l, batch.n_u)
    with autocast(device, amp):
        out = model(inputs, n_project=batch.n_l + batch.n_u if method.needs_projection else 0, groups=groups)
    terms, diag, pseudo = method.loss(out, batch, cfg.loss, distributed.all_gather_with_grad)
    loss = sum(terms.values())
    optimizer.zero_grad(set_to_none=True)
    ok = torch.stack([v.detach().float() for v in terms.values()]).isfinite()
    finite = ok.all().float().view(1)
    if distributed.world_size() > 1:  # every rank must skip together, or DDP's all-reduce hangs
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    apply, *term_ok = torch.cat([finite, ok.float()]).tolist()  # the step's one device sync
    if apply:
        loss.backward()
        if cfg.train.clip_grad_norm:  # the norm before clipping: how often the limit binds is in metrics.jsonl
            params = [p for g in optimizer.param_groups for p in g["params"]]
            diag = {**diag, "grad_norm": nn.utils.clip_grad_norm_(params, cfg.train.clip_grad_norm).detach()}
        optimizer.step()
    bad = [k for k, good in zip(terms, term_ok) if not good]
    return loss.detach(), {k: v.detach() for k, v in terms.items()}, diag, pseudo, bad


def train(cfg: Config, run_dir: str | Path) -> TwoStream:
    """Train (or resume) the run in ``run_dir``; returns the trained networks
    (also saved as ``run_dir/checkpoints/last.pt``). One process at a time trains a run folder
    (``runlock``); SIGINT or SIGTERM stop it at the next step boundary with a checkpoint,
    raising ``RunInterrupted`` (``stopping``)."""
    distributed.setup()
    paths = RunPaths(run_dir)
    with runlock.hold(paths, distributed.is_main()), stopping.on_signals() as stop:
        return _train(cfg, paths, stop)


def _train(cfg: Config, paths: RunPaths, stop: stopping.StopRequest) -> TwoStream:
    t, pos = setup(cfg, paths)
    if pos.step >= t.total and (pos.step == 0 or _validated_at(paths, pos.step)):
        return t.net  # finished already (or nothing to train): re-running the command changes nothing
    logged = TrainLog(t, pos)
    try:
        labeled = t.loaders.labeled_batches(pos.labeled_pass, pos.labeled_batches)
        every = eval_interval(cfg.train.eval_every_epochs, t.loaders.steps_per_epoch)
        while pos.step < t.total:
            for unl in t.loaders.unlabeled_batches(pos.epoch, pos.epoch_batches):
                if pos.step >= t.total:
                    break
                if pos.step and pos.step % every == 0:  # before the next step: a run resumed here validates too
                    logged.write(pos.step, validated(t, pos))
                labeled_at, lab = next(labeled)
                result = one_step(t, pos, lab, unl)
                pos.advance(labeled_at)
                logged.step(pos, result)
                signum = stop.requested(t.device) if pos.step < t.total else 0
                if signum or (pos.step % cfg.train.ckpt_every_steps == 0 and pos.step < t.total):
                    save_checkpoint(t, pos)
                if signum:
                    raise _stopped(t, pos, signum)
            else:  # the epoch's unlabeled batches are used up
                pos.next_epoch()
                if pos.step < t.total:
                    end_epoch(t, pos)
        save_checkpoint(t, pos)  # before the final validation: however that ends, no training is lost
        if signum := stop.requested(t.device):  # a rerun validates a run whose final validation is missing
            raise _stopped(t, pos, signum)
        final = validated(t, pos)
        save_checkpoint(t, pos)  # again, with the PreciseBN statistics the final numbers were measured with
        logged.write(pos.step, final)
        logged.hparams(final)
        if distributed.is_main():
            t.paths.bad_inputs.write_text(json.dumps(bad_inputs.collect(t.paths.bad_inputs_log), indent=1))
    finally:  # also when a step fails: the TensorBoard thread and the progress bar end with the run
        logged.close()
    return t.net


def _validated_at(paths: RunPaths, step: int) -> bool:
    """Whether metrics.jsonl has the validation of ``step``: a run whose final validation failed
    or was stopped has its final checkpoint, and its next run validates it. Rank 0 reads the file and
    tells the others: without a shared filesystem they could disagree, and hang in the validation."""
    done = None
    if distributed.is_main():
        done = any(r.get("step") == step and any(k.startswith("val/") for k in r) for r in read_metrics(paths.metrics))
    return bool(distributed.all_gather_object(done)[0])


def _stopped(t: Training, pos: Position, signum: int) -> RunInterrupted:
    """The error that ends a run a signal stopped, once its checkpoint is saved."""
    return RunInterrupted(
        signum,
        f"stopped by {signal.Signals(signum).name} at step {pos.step} of {t.total}; "
        f"checkpoint {t.paths.last} saved: the same command resumes",
    )


def setup(cfg: Config, paths: RunPaths) -> tuple[Training, Position]:
    """Everything the run trains with, and where it starts: from its last checkpoint if it has one."""
    distributed.setup()
    device = pick_device(cfg.train.device)
    # threads leave the workers their CPUs, counted under a container's quota: oversubscribed
    # small convs run several times slower, and threads throttled by a quota stall together
    budget = cpus.plan(cfg.train.cpus, cfg.data.num_workers, cfg.data.cache_frames)
    torch.set_num_threads(budget.threads)  # PyTorch's own count under OMP_NUM_THREADS
    resume = _resumable(paths, cfg)
    if distributed.is_main():
        paths.root.mkdir(parents=True, exist_ok=True)
        save_config(cfg, paths.config)

    torch.manual_seed(cfg.seed)
    method = get_method(cfg.method)
    streams = cfg.streams()
    splits = build_splits(cfg.data, cfg.seed)
    bad = BadInputs(cfg.data.max_bad_fraction, paths.bad_inputs_log)
    loaders = Loaders(cfg, splits, bad, streams, budget.workers, method.uses_unlabeled)
    preflight(cfg, splits, loaders.steps_per_epoch, method.uses_unlabeled, distributed.world_size())
    net = _networks(cfg, method, streams, len(splits.class_names), device, fresh=resume is None)
    optimizer = torch.optim.SGD(
        net.parameters(),
        lr=cfg.train.lr,
        momentum=cfg.train.momentum,
        weight_decay=cfg.train.weight_decay,
        fused=device.type == "cuda",
    )
    pos = Position() if resume is None else _restore(resume, net, optimizer, paths)
    model: nn.Module = net
    if distributed.world_size() > 1:
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        model = torch.compile(model)
    total = int(cfg.train.epochs * loaders.steps_per_epoch)
    if cfg.train.max_steps is not None:
        total = min(total, cfg.train.max_steps)
    t = Training(
        cfg=cfg,
        paths=paths,
        method=method,
        loaders=loaders,
        net=net,
        model=model,
        optimizer=optimizer,
        device=device,
        amp=use_amp(cfg.train.amp, device),
        class_names=splits.class_names,
        total=total,
    )
    if distributed.is_main():
        _log_start(t, splits, budget)
    return t, pos


def _resumable(paths: RunPaths, cfg: Config) -> dict | None:
    """The run's last checkpoint, if it has one, unless ``cfg`` would train it on with other settings."""
    if not paths.last.exists():
        return None
    resume = checkpoint.load(paths.last)
    if changed := config_changes(config_from_dict(resume["config"]), cfg):
        # resuming would mix two recipes in one set of weights, under the new config.yaml
        raise ConfigError(
            f"{paths.last} was trained with other settings ({'; '.join(changed)}): "
            f"run the same command to resume it, or give a new --out "
            f"(or delete {paths.checkpoints} to train this run again)"
        )
    return resume


def _networks(
    cfg: Config, method: Method, streams: tuple[str, ...], num_classes: int, device: torch.device, fresh: bool
) -> TwoStream:
    """The run's networks; ``fresh`` (a run starting, not resuming) loads ``model.pretrained``."""
    net = create_model(cfg.model, num_classes, streams, method.needs_projection, pretrained=fresh).to(device)
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    if distributed.world_size() > 1 and cfg.train.sync_bn:
        net = convert_sync_batchnorm(net, device)
    return net


def _log_start(t: Training, splits: Splits, budget: cpus.CpuPlan) -> None:
    """What the run is about to do, as this machine resolved the config: where it writes, on what,
    how much data, how many steps, and how its BatchNorm and CPUs are set up."""
    cfg = t.cfg
    bn = {type(m).__name__ for m in t.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    log.info(
        "%s: %s on %s, %d process(es); %d labeled / %d unlabeled / %d test videos, %d classes; "
        "%d steps per epoch, %d steps in all",
        t.paths.root,
        cfg.method,
        t.device,
        distributed.world_size(),
        len(splits.labeled),
        len(splits.unlabeled),
        len(splits.test),
        len(splits.class_names),
        t.loaders.steps_per_epoch,
        t.total,
    )
    log.info(
        "BatchNorm: %s, PreciseBN: %d batches of the %s clips; %d CPU(s) per process (%s), "
        "%d intra-op thread(s) (%s), %d loader worker(s)",
        ", ".join(sorted(bn)),
        cfg.train.precise_bn_batches,
        cfg.train.precise_bn_data,
        budget.cpus,
        budget.source,
        budget.threads,
        budget.threads_source,
        budget.workers,
    )


def _restore(resume: dict, net: TwoStream, optimizer: torch.optim.Optimizer, paths: RunPaths) -> Position:
    """Weights, optimiser and this rank's RNG as the checkpoint left them. Keys it does not read
    are ignored, such as the always-None ``scaler`` of checkpoints from earlier versions."""
    checkpoint.load_state(net, resume["model"], paths.last)
    checkpoint.load_state(optimizer, resume["optimizer"], paths.last)
    rng = resume["rng"]
    checkpoint.set_rng_state(rng[distributed.rank()] if isinstance(rng, list) else rng)
    unknown = set(resume["position"]) - {f.name for f in fields(Position)}
    if unknown:  # written by a newer tgsemi, or crafted: resuming would misplace the run
        raise CheckpointError(f"{paths.last}: its position has keys this version does not know: {sorted(unknown)}")
    pos = Position(**resume["position"])
    log.info("resuming %s at step %d", paths.root, pos.step)
    return pos


def one_step(t: Training, pos: Position, lab: dict, unl: dict | None) -> StepResult:
    """Train step ``pos.step`` (0-based) on a labeled and an unlabeled batch from the loaders."""
    lr = lr_at(pos.step, t.cfg, t.loaders.steps_per_epoch, distributed.world_size())
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    unlabeled_on = pos.step / t.loaders.steps_per_epoch >= t.cfg.loss.unlabeled_warmup_epochs
    inputs, batch, y_u = t.loaders.step_inputs(lab, unl, t.device, pos.step, unlabeled_on)
    loss, terms, diag, pseudo, bad_terms = train_step(
        t.model, t.method, inputs, batch, t.optimizer, t.cfg, t.amp, t.device
    )
    if pseudo is not None and y_u is not None:
        diag["pl_acc"] = pseudo_label_accuracy(pseudo, y_u)
    if bad_terms:
        if t.cfg.train.on_nonfinite == "stop":  # step numbers are 1-based, as in metrics.jsonl
            raise NonFiniteLossError(
                f"non-finite loss at step {pos.step + 1} in term(s) {', '.join(bad_terms)}; the last good "
                f"checkpoint in {t.paths.checkpoints} is intact (train.on_nonfinite=skip skips such steps)"
            )
        log.warning("skipped step %d: non-finite loss term(s) %s", pos.step + 1, bad_terms)
    return StepResult(lr, loss, terms, diag)


def save_checkpoint(t: Training, pos: Position) -> None:
    """The main process writes what resuming needs, with every rank's RNG state; all ranks wait for it."""
    rngs = distributed.all_gather_object(checkpoint.rng_state())
    if distributed.is_main():
        checkpoint.save(
            {
                "model": t.net.state_dict(),
                "optimizer": t.optimizer.state_dict(),
                "position": vars(pos).copy(),
                "rng": rngs,
                "config": t.cfg.model_dump(),
                "class_names": t.class_names,
                "data_paths": trained_on(t.cfg.data),
            },
            t.paths.checkpoints,
            pos.step,
            t.cfg.train.keep_last,
        )
    distributed.barrier()


def end_epoch(t: Training, pos: Position) -> None:
    """A checkpoint every ``train.ckpt_every_epochs`` (validation follows in the loop, so a run resumed
    from this checkpoint validates this step as the uninterrupted run does)."""
    if t.cfg.train.ckpt_every_epochs and pos.epoch % t.cfg.train.ckpt_every_epochs == 0:
        save_checkpoint(t, pos)


def eval_interval(epochs: float, steps_per_epoch: int) -> int:
    """Steps between validations for ``train.eval_every_epochs``: that many epochs of steps, rounded to
    the nearest step (halves up), at least 1; a whole number of epochs validates at those epochs' ends."""
    return max(math.floor(epochs * steps_per_epoch + 0.5), 1)


def validated(t: Training, pos: Position) -> dict:
    """``validate``, keeping the weights in ``best.pt`` when the inference stream's top-1 is the
    best so far (ties keep the earlier: a later equal score is no evidence of a better model)."""
    res = validate(t)
    top1 = res[f"val/{t.net.primary}/top1"]
    if top1 > pos.best_top1:  # NaN (nothing decoded) never compares greater
        pos.best_top1 = top1
        if distributed.is_main():
            state = {"model": t.net.state_dict(), "position": vars(pos).copy(), "config": t.cfg.model_dump()}
            state.update(class_names=t.class_names, data_paths=trained_on(t.cfg.data), metrics=res)
            checkpoint.write(state, t.paths.best)
    return res


def validate(t: Training) -> dict:
    """PreciseBN, then 1-clip centre-crop accuracy of every stream. Runs under a
    forked RNG so that evaluating never changes the training that follows."""
    cfg, out = t.cfg, {}
    with torch.random.fork_rng(devices=[t.device] if t.device.type == "cuda" else []):
        for s, stream_net in t.net.nets.items():
            clips = precise_bn(
                stream_net,
                t.loaders.precise_bn_batches(),
                s,
                t.device,
                cfg.train.precise_bn_batches,
                cfg.train.channels_last,
            )
            out[f"precise_bn/{s}/clips"] = clips * distributed.world_size()
            res = evaluate(
                stream_net,
                t.loaders.test,
                s,
                stream_net.fc.out_features,
                t.device,
                cfg.eval.batch_size,
                t.loaders.workers,
                t.amp,
                cfg.train.channels_last,
            )
            out.update({f"val/{s}/{k}": v for k, v in res.items() if k != "confusion"})
    return out
