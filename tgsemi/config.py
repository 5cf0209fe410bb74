"""Typed run configuration: YAML presets + ``dotted.key=value`` overrides.

OmegaConf merges presets and command-line overrides; pydantic validates the
result, so a typo or a wrong type fails at start-up naming the key (and, for
choices, the valid values) instead of hours into a run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, get_args

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tgsemi.errors import ConfigError

if TYPE_CHECKING:
    from tgsemi.methods import Method

PRESET_DIR = Path(__file__).parent / "configs"
RandAugmentOp = Literal[  # torchvision's RandAugment ops (tests check the two lists agree)
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
]
ReferenceOp = Literal[  # the reference's 15 strong ops (transforms.REFERENCE_OPS; tests check they agree)
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Posterize",
    "Solarize",
    "EnhanceColor",
    "EnhanceContrast",
    "EnhanceBrightness",
    "EnhanceSharpness",
    "Autocontrast",
    "Equalize",
    "Invert",
    "Cutout",
]

# Upper bounds far beyond any real setting: a value past them is a typo, refused before it exhausts memory
# (a 10**9-frame clip, a 10**6-wide network) instead of failing deep in a run.
MAX_FRAMES = 1024  # clip_len, frame_interval
MAX_SIDE = 4096  # resize, crops (pixels)
MAX_BATCH = 65536  # clips in a batch
MAX_SEED = 2**32 - 1  # numpy's legacy RandomState, sklearn and most seeders take 32-bit seeds
PathText = Annotated[str, Field(min_length=1)]  # "" would silently mean the working directory


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Strict):
    root: PathText = "data/demo"
    train_list: PathText | None = None  # default: ROOT/trainlist01.txt
    test_list: PathText | None = None  # default: ROOT/testlist01.txt
    labeled_list: PathText | None = None
    labeled_fraction: float | None = Field(0.2, gt=0, le=1)
    split_strategy: Literal["stratified", "random", "per-class"] = "stratified"
    per_class: int | None = Field(None, ge=1)
    unlabeled: Literal["all", "complement"] = "all"
    clip_len: int = Field(8, ge=1, le=MAX_FRAMES)
    frame_interval: int = Field(8, ge=1, le=MAX_FRAMES)
    resize: int = Field(128, ge=8, le=MAX_SIDE)  # short side before cropping
    crop: int = Field(112, ge=8, le=MAX_SIDE)  # at most resize: test crops are cut from the resized frame
    crop_area: tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]] = (
        0.08,
        1.0,
    )  # RandomResizedCrop's area range (lo, hi), lo <= hi
    # weak views' hue rotation, drawn per clip from [-hue_jitter, hue_jitter] of the colour circle
    # before the TG is taken (not the paper's; 0.5: colour carries no class information)
    hue_jitter: float = Field(0.0, ge=0, le=0.5)
    # strong views: the authors' 2 of 15 ops at `strong_level` (docs/method.md section 4), or
    # torchvision's RandAugment(2, 9) plus a cutout. Defaults throughout keep what runs saved before
    # an option existed computed; the paper presets set the reference's values.
    strong_aug: Literal["reference", "randaugment"] = "randaugment"
    strong_level: float = Field(0.9, ge=0, le=1)  # reference ops only
    strong_ops_tg: list[RandAugmentOp | ReferenceOp] | None = None  # ops for strong TG views; None: all
    # what geometric strong ops leave uncovered in a TG clip: 127 is "no motion", 0 the reference's
    # imgaug default (it augments TG images like RGB ones)
    tg_fill: int = Field(127, ge=0, le=255)
    # where strong views are built: per item by the loader on the CPU, or for the whole batch on the
    # training device from uint8 weak views (data/batch_aug.py). batch is implemented for the reference
    # ops only (strong_aug=reference); it draws other random numbers than item, from the same distribution.
    strong_on: Literal["item", "batch"] = "item"
    backend: Literal["pyav", "decord", "torchcodec"] | None = None  # video.BACKENDS (tests check they agree)
    # DataLoader workers per process; auto: sized from the usable CPUs (cpus.loader_workers)
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = 2
    cache_frames: bool = False  # keep training videos decoded in memory (datasets.FrameCache; num_workers 0 or auto)
    on_missing: Literal["error", "skip"] = "error"
    max_bad_fraction: float = Field(0.1, ge=0, le=1)
    allow_outside_root: bool = False
    # symbolic links inside the root that lead out of it: refused unless true (allow_outside_root implies it)
    follow_symlinks: bool = False
    # videos without labels that join the unlabeled pool: a list of paths (one a line, under root) or a folder
    unlabeled_list: PathText | None = None
    # class names (UCF-101's classInd.txt or one name a line), shared by every list; default: ROOT/classInd.txt
    # when there is one, else the sorted union of the names the lists use (Kinetics CSVs, HMDB-51 split folders)
    class_index: PathText | None = None
    # input guards: larger files are bad inputs, refused before a byte is read; so is a read that takes longer
    max_file_mb: float | None = Field(4096, gt=0)
    max_decode_seconds: float | None = Field(120, gt=0)

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers_or_auto(cls, value: object) -> object:
        """One message naming both forms, instead of one per member of the union."""
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        raise ValueError(f"must be a number of workers >= 0 or 'auto', got {value!r}")

    @model_validator(mode="after")
    def _tg_ops_of_the_chosen_aug(self) -> "DataConfig":
        valid = get_args(ReferenceOp if self.strong_aug == "reference" else RandAugmentOp)
        ops = self.strong_ops_tg
        bad = [op for op in ops or [] if op not in valid]
        if bad or ops == [] or (ops and len(set(ops)) < len(ops)):
            raise ValueError(
                f"strong_ops_tg must be a non-empty subset of the {self.strong_aug} ops, each once, "
                f"{list(valid)}, got {self.strong_ops_tg}"
            )
        return self

    @model_validator(mode="after")
    def _crops_fit(self) -> "DataConfig":
        lo, hi = self.crop_area
        if lo > hi:
            raise ValueError(f"crop_area: must be a range [lo, hi] with lo <= hi, got {list(self.crop_area)}")
        if self.crop > self.resize:  # the test crops would be padded with black
            raise ValueError(
                f"crop: must be at most data.resize ({self.resize}), the frames' short side, got {self.crop}"
            )
        return self

    @model_validator(mode="after")
    def _one_labeled_subset_size(self) -> "DataConfig":
        """What ``build_splits`` passes ``make_split`` when there is no labeled list, checked here so the
        key is named at load instead of at start-up."""
        if self.labeled_list is not None:
            return self
        if (self.per_class is not None) != (self.split_strategy == "per-class"):
            raise ValueError(
                f"per_class: goes with split_strategy 'per-class' and only with it "
                f"(split_strategy {self.split_strategy!r}, per_class {self.per_class})"
            )
        if self.split_strategy != "per-class" and self.labeled_fraction is None:
            raise ValueError("labeled_fraction: needed without a labeled_list (or use split_strategy per-class)")
        return self

    @model_validator(mode="after")
    def _batch_strong_aug_is_the_reference(self) -> "DataConfig":
        if self.strong_on == "batch" and self.strong_aug != "reference":
            raise ValueError(
                "batch strong augmentation is implemented for the reference ops: "
                "set data.strong_aug=reference or data.strong_on=item"
            )
        return self

    @model_validator(mode="after")
    def _cache_in_process(self) -> "DataConfig":
        if self.cache_frames and self.num_workers not in (0, "auto"):  # auto: 0 with the cache
            raise ValueError(
                "cache_frames needs num_workers=0: each worker would fill its own copy "
                "and lose it when the worker ends (set data.cache_frames=false to use workers)"
            )
        return self


class ModelConfig(_Strict):
    width: int = Field(64, ge=4, le=1024)  # base width: 64 is the paper's R3D-18
    dropout: float = Field(0.5, ge=0, lt=1)
    projection_dim: int = Field(512, ge=1, le=65536)
    modality: Literal["rgb", "tg"] = "rgb"  # stream of single-stream methods
    # table4: supplement Table 4 (no max-pool, for 112 crops); mmaction: the authors' ResNet3d
    # (1x3x3 max-pool after the stem, 2x1x1 temporal max-pool after layer1, for 224 crops)
    layout: Literal["mmaction", "table4"] = "table4"
    # every BatchNorm, backbone and projection head (the authors': eps 1e-3 in the backbones but
    # mmcv's 1e-5 in the projection heads, momentum 0.1 in both)
    bn_eps: float = Field(1e-5, gt=0)
    bn_momentum: float = Field(0.1, ge=0, le=1)
    # None: PyTorch's default Linear init in the projection head; the authors': N(0, 0.01)
    projection_init_std: float | None = Field(None, gt=0)
    # initial weights of the networks in pretrained_streams (models/pretrained.py): none (random), torchvision_k400
    # (torchvision's Kinetics-400 r3d_18, through its weights API; width 64), or the path of a tgsemi run /
    # checkpoint (its network of the same stream) or of a state dict file. Read when a run starts, not on resume.
    pretrained: str = "none"
    pretrained_streams: list[Literal["rgb", "tg"]] = ["rgb"]
    # the mean / std the first convolution sees its input normalised with: the clips are always normalised
    # with ImageNet's, and a network whose weights expect others maps them there exactly (pretrained.py).
    # auto: kinetics400 for networks started from torchvision_k400 (torchvision's video statistics), else imagenet
    input_norm: Literal["auto", "imagenet", "kinetics400"] = "auto"

    @model_validator(mode="after")
    def _torchvision_weights_fit(self) -> "ModelConfig":
        if self.pretrained == "torchvision_k400" and self.width != 64:
            raise ValueError(
                f"model.pretrained=torchvision_k400 is torchvision's r3d_18, of width 64: "
                f"set model.width=64 (got {self.width})"
            )
        if not self.pretrained_streams:
            raise ValueError("model.pretrained_streams must name at least one of rgb, tg")
        return self


class LossConfig(_Strict):
    threshold: float = Field(0.3, ge=0, le=1)
    distribution_alignment: bool = False  # methods.base.pseudo_labels; not in the paper's recipe
    # TG-FixMatch's pseudo-labels: the averaged RGB+TG logits (the paper), the TG network's alone,
    # or the average where each network's own argmax (raw logits, before any alignment) agrees
    # (methods.fixmatch.fixmatch_terms). This knob and the three below act on tg_fixmatch only.
    pseudo_labels: Literal["mean", "tg", "agree"] = "mean"
    # true: each network's supervised and unlabeled CE at full weight, as when it trains alone;
    # false: their mean over the streams (the paper), which halves each network's share of them
    sum_streams: bool = False
    # false: TG-FixMatch's TG network learns from the labels only (no pseudo-label loss), so that the
    # pseudo-labels' errors do not reach the teacher; true: both networks learn from them (the paper)
    tg_unlabeled: bool = True
    # weights of minimised terms: a negative one would maximise its term (the loss climbs); 0 turns it off
    unlabeled_weight: float = Field(1.0, ge=0)
    unlabeled_warmup_epochs: float = Field(30, ge=0)
    align_weight: float = Field(1.0, ge=0)
    align_stages: list[Annotated[int, Field(ge=0, le=3)]] = [0, 1, 2, 3]  # [] is no alignment, as align_weight 0
    contrast_weight: float = Field(1.0, ge=0)
    temperature: float = Field(0.5, gt=0)
    # symmetric: both networks learn from the contrastive term (the paper); tg_teaches: the TG
    # projections are detached, so only the RGB network moves toward the TG one
    contrast: Literal["symmetric", "tg_teaches"] = "symmetric"

    @model_validator(mode="after")
    def _stages_exist(self) -> "LossConfig":
        if len(set(self.align_stages)) < len(self.align_stages):
            raise ValueError(f"align_stages: must be drawn from [0, 1, 2, 3], each once, got {self.align_stages}")
        return self


class TrainConfig(_Strict):
    epochs: float = Field(180, gt=0)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(5, ge=1, le=MAX_BATCH)  # labeled clips per rank
    mu: int = Field(1, ge=0, le=1024)  # unlabeled clips per labeled clip
    lr: float = Field(0.2, gt=0)  # for a global labeled batch of base_batch_size
    base_batch_size: int = Field(40, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD's: 1 or more never forgets a gradient (diverges)
    weight_decay: float = Field(1e-4, ge=0)
    clip_grad_norm: float | None = Field(40.0, gt=0)  # None: no clipping
    warmup_epochs: float = Field(30, ge=0)
    # warmup_cosine: linear warm-up from 0.1x, then cosine over the remaining steps, per step;
    # mmcv_cosine: the reference's (mmcv CosineAnnealing by epoch over all epochs, linear warm-up factor)
    lr_schedule: Literal["warmup_cosine", "mmcv_cosine"] = "warmup_cosine"
    amp: Literal["auto", "bf16", "off"] = "auto"  # auto: bf16 on CUDA, off on CPU
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = False  # SyncBatchNorm whenever more than one process runs
    # clips normalised apart in BatchNorm (models.r3d.bn_groups); the paper: one batch for all
    split_bn: Literal["none", "strong", "labeled", "views"] = "none"
    precise_bn_batches: int = Field(200, ge=0)
    # BN statistics recomputed before each validation from `labeled` clips with training augmentation,
    # or (the reference) from the whole `train` split through the validation pipeline (centre crop)
    precise_bn_data: Literal["labeled", "train"] = "labeled"
    # validation every round(eval_every_epochs x steps per epoch) steps (halves up, at least 1) and at the
    # end: fractions of an epoch validate within epochs (short runs), whole numbers at epoch ends
    eval_every_epochs: float = Field(5, gt=0)
    ckpt_every_steps: int = Field(500, ge=1)
    ckpt_every_epochs: int | None = Field(None, ge=1)  # also at the end of every N epochs (the reference: 5)
    keep_last: int = Field(3, ge=1)
    log_every_steps: int = Field(10, ge=1)
    on_nonfinite: Literal["stop", "skip"] = "stop"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True
    # CPUs the run's processes on this machine share (None: the affinity mask or cgroup quota, if smaller)
    cpus: int | None = Field(None, ge=1)

    @field_validator("split_bn", mode="before")
    @classmethod
    def _split_bn_from_bool(cls, value: object) -> object:
        """Run folders written before the grouping choice said true / false."""
        return {True: "strong", False: "none"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _split_bn_without_sync(self) -> "TrainConfig":
        if self.split_bn != "none" and self.sync_bn:
            raise ValueError("split_bn and sync_bn cannot be combined: SyncBatchNorm normalises the whole batch")
        return self


class EvalConfig(_Strict):
    clips: int = Field(10, ge=1, le=MAX_FRAMES)
    crops: Literal[1, 3] = 3
    # side of the three test crops (None: data.crop; the reference: 256), at most data.resize; one crop
    # is always the validation pipeline's centre data.crop
    crop: int | None = Field(None, ge=8, le=MAX_SIDE)
    batch_size: int = Field(8, ge=1, le=MAX_BATCH)


class Config(_Strict):
    method: str = "tg_fixmatch"  # a name in the registry, tgsemi.methods.METHODS
    seed: int = Field(0, ge=0, le=MAX_SEED)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @field_validator("method")
    @classmethod
    def _registered(cls, name: str) -> str:
        """Checked against the registry, not a fixed list: registering a method makes it valid."""
        _method(name)  # its ValueError lists the registered names
        return name

    @model_validator(mode="after")
    def _test_crops_fit(self) -> "Config":
        if self.eval.crop is not None and self.eval.crop > self.data.resize:
            raise ValueError(
                f"eval.crop: must be at most data.resize ({self.data.resize}), the frames' short side, "
                f"got {self.eval.crop}"
            )
        return self

    def streams(self) -> tuple[str, ...]:
        """Networks this method trains: those its ``Method`` names, else the chosen modality."""
        return _method(self.method).streams_for(self.model.modality)


def _method(name: str) -> Method:
    """The registry entry, imported on first use: the methods import this module for their config."""
    from tgsemi.methods import get_method

    return get_method(name)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _preset_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise ConfigError(
        f"unknown config {name_or_path!r}: not a YAML file and not a preset; presets: {', '.join(preset_names())}"
    )


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc, msg = e["loc"], e["msg"]
        # a check across keys (a model validator) names the key at fault first: "crop: must be ..."
        named = re.match(r"([a-z_][\w.]*): (.*)", str(e.get("ctx", {}).get("error", "")), re.S)
        if e["type"] == "value_error" and named and _is_key(loc + tuple(named.group(1).split("."))):
            loc, msg = loc + tuple(named.group(1).split(".")), named.group(2)
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            parent = _model_at(Config, e["loc"][:-1])
            valid = ", ".join(parent.model_fields) if parent else "?"
            msg = f"unknown key; valid keys here: {valid}"
        lines.append(f"  {key}: {msg}")
    return "invalid config:\n" + "\n".join(lines)


def _is_key(loc: tuple) -> bool:
    parent = _model_at(Config, loc[:-1])
    return bool(loc) and parent is not None and str(loc[-1]) in parent.model_fields


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def _load_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """One preset, following its optional ``base:`` chain (a preset name or path); ``chain``: the
    files that named this one as their base, so that a chain which loops is named, not recursed."""
    chain += (path.resolve(),)
    if chain[-1] in chain[:-1]:
        raise ConfigError(f"{path}: the base: chain loops: {' -> '.join(str(p) for p in chain)}")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path))
    except (OmegaConfBaseException, OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    parent = _load_yaml(_preset_path(str(base)), chain)
    return _merge(path, parent, raw)


def _merge(where: object, *layers: object) -> dict:
    try:
        return OmegaConf.to_container(OmegaConf.merge(*layers))
    except (OmegaConfBaseException, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot merge: {exc}") from None


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Preset (name or YAML path) + ``dotted.key=value`` overrides -> validated Config."""
    layers = [OmegaConf.create(_load_yaml(_preset_path(name_or_path)) if name_or_path else {})]
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like dotted.key=value")
        try:
            layers.append(OmegaConf.from_dotlist([item]))
        except (OmegaConfBaseException, yaml.YAMLError, IndexError, ValueError, TypeError) as exc:
            raise ConfigError(f"override {item!r}: {exc}") from None
    return config_from_dict(_merge(f"overrides {overrides}", *layers))


def config_from_dict(values: dict) -> Config:
    try:
        return Config.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None


# What a run may change when it resumes: how it is watched, saved and evaluated and how far it
# goes, never what a step computes (data items are seeded by index, so workers don't matter, and a
# cached video gives the same items as a decoded one).
RESUMABLE = (
    "train.max_steps",
    "train.progress",
    "train.log_every_steps",
    "train.ckpt_every_steps",
    "train.keep_last",
    "train.cpus",
    "data.num_workers",
    "data.cache_frames",
    "eval",
)


def flat_config(cfg: Config) -> dict:
    """``{"train.lr": 0.2, ...}``: every setting under its dotted key (as overrides name it)."""

    def leaves(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    return leaves(cfg.model_dump())


def config_changes(old: Config, new: Config) -> list[str]:
    """``"key: old -> new"`` for each setting that differs, except keys under ``RESUMABLE``."""
    a, b = flat_config(old), flat_config(new)
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k) and not any(k == p or k.startswith(p + ".") for p in RESUMABLE)
    ]


def config_yaml(cfg: Config) -> str:
    """The resolved config as YAML: what a run saves as config.yaml and ``--print-config`` shows."""
    return OmegaConf.to_yaml(OmegaConf.create(cfg.model_dump()))


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(config_yaml(cfg))
