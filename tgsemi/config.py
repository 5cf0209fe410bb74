"""Typed run configuration: YAML presets + ``dotted.key=value`` overrides.

OmegaConf merges presets and command-line overrides; pydantic validates the
result, so a typo or a wrong type fails at start-up naming the key (and, for
choices, the valid values) instead of hours into a run.
"""

from __future__ import annotations

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Strict):
    root: str = "data/demo"
    train_list: str | None = None  # default: ROOT/trainlist01.txt
    test_list: str | None = None  # default: ROOT/testlist01.txt
    labeled_list: str | None = None
    labeled_fraction: float | None = Field(0.2, gt=0, le=1)
    split_strategy: Literal["stratified", "random", "per-class"] = "stratified"
    per_class: int | None = Field(None, ge=1)
    unlabeled: Literal["all", "complement"] = "all"
    clip_len: int = Field(8, ge=1)
    frame_interval: int = Field(8, ge=1)
    resize: int = Field(128, ge=8)  # short side before cropping
    crop: int = Field(112, ge=8)
    crop_area: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop's area range
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
    backend: str | None = None
    # DataLoader workers per process; auto: sized from the usable CPUs (cpus.loader_workers)
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = 2
    cache_frames: bool = False  # keep training videos decoded in memory (datasets.FrameCache; num_workers 0 or auto)
    on_missing: Literal["error", "skip"] = "error"
    max_bad_fraction: float = Field(0.1, ge=0, le=1)
    allow_outside_root: bool = False

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
        bad = [op for op in self.strong_ops_tg or [] if op not in valid]
        if bad or self.strong_ops_tg == []:
            raise ValueError(
                f"strong_ops_tg must be a non-empty subset of the {self.strong_aug} ops "
                f"{list(valid)}, got {self.strong_ops_tg}"
            )
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
    width: int = Field(64, ge=4)  # base width: 64 is the paper's R3D-18
    dropout: float = Field(0.5, ge=0, lt=1)
    projection_dim: int = Field(512, ge=1)
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


class LossConfig(_Strict):
    threshold: float = Field(0.3, ge=0, le=1)
    distribution_alignment: bool = False  # methods.base.pseudo_labels; not in the paper's recipe
    unlabeled_weight: float = 1.0
    unlabeled_warmup_epochs: float = Field(30, ge=0)
    align_weight: float = 1.0
    align_stages: list[int] = [0, 1, 2, 3]
    contrast_weight: float = 1.0
    temperature: float = Field(0.5, gt=0)

    @model_validator(mode="after")
    def _stages_exist(self) -> "LossConfig":
        bad = [s for s in self.align_stages if s not in (0, 1, 2, 3)]
        if bad:
            raise ValueError(f"align_stages must be drawn from [0, 1, 2, 3], got {bad}")
        return self


class TrainConfig(_Strict):
    epochs: float = Field(180, gt=0)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(5, ge=1)  # labeled clips per rank
    mu: int = Field(1, ge=0)  # unlabeled clips per labeled clip
    lr: float = Field(0.2, gt=0)  # for a global labeled batch of base_batch_size
    base_batch_size: int = Field(40, ge=1)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    clip_grad_norm: float | None = 40.0
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
    clips: int = Field(10, ge=1)
    crops: Literal[1, 3] = 3
    # side of the three test crops (None: data.crop; the reference: 256); one crop is always the
    # validation pipeline's centre data.crop
    crop: int | None = Field(None, ge=8)
    batch_size: int = Field(8, ge=1)


class Config(_Strict):
    method: str = "tg_fixmatch"  # a name in the registry, tgsemi.methods.METHODS
    seed: int = 0
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
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            parent = _model_at(Config, e["loc"][:-1])
            valid = ", ".join(parent.model_fields) if parent else "?"
            msg = f"unknown key; valid keys here: {valid}"
        lines.append(f"  {key}: {msg}")
    return "invalid config:\n" + "\n".join(lines)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def _load_yaml(path: Path) -> dict:
    """One preset, following its optional ``base:`` chain (a preset name or path)."""
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path))
    except (OmegaConfBaseException, OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    parent = _load_yaml(_preset_path(str(base)))
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


def config_changes(old: Config, new: Config) -> list[str]:
    """``"key: old -> new"`` for each setting that differs, except keys under ``RESUMABLE``."""

    def leaves(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = leaves(old.model_dump()), leaves(new.model_dump())
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k) and not any(k == p or k.startswith(p + ".") for p in RESUMABLE)
    ]


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg.model_dump())))
