"""The training run's settings (one dataclass, saved in the run card and the resume state)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .clip_forward import ClipPromptConfig
from .crop import CropConfig
from .losses import LossWeights
from .presets import Preset
from .sampler import AugmentConfig, Mode, SampleConfig

__all__ = ["TrainConfig", "PROMPT_MIXES"]

#: ``--prompt`` choices -> (p_mask, p_box, p_click) on conditioning frames.
PROMPT_MIXES = {"mixed": (0.2, 0.5, 0.3), "box": (0.0, 1.0, 0.0), "points": (0.0, 0.0, 1.0),
                "mask": (1.0, 0.0, 0.0)}


@dataclass
class TrainConfig:
    """Everything a training run depends on.

    Parameters
    ----------
    data : list of str
        ``--data`` entries (see :mod:`.data`).
    out : str
        Run folder (checkpoints, state, run card).
    val : list of str or int or float
        Validation volume names, count or fraction (split by volume).
    val_data : list of str
        Extra ``--data``-style entries used only for validation.
    data_weights : list of float, optional
        Sampling weight of each ``data`` entry (default: its number of training volumes).
    model, checkpoint, random_init, image_size, device
        The model to start from (registry name, weights).
    preset : Preset
        What trains (``decoder``, ``full``, ``lora``, ``custom``).
    trainable : list of str
        Parameter-name prefixes for ``custom``; added to any other preset (e.g. SLM modules).
    memory : str
        ``sam2`` or ``slm`` (SLM-SAM2 modules are added to the model and trained).
    mode, frames, max_objects : training samples (2d slices or 3d clips).
    image_fraction : float
        In 3d mode, the fraction of samples that are single slices (image mode).
    p_object_end : float
        In 3d mode, the fraction of clips that start near the end of their object's extent, so that
        the clip shows it vanish (teaches when to stop propagating).
    prompt : str
        ``mixed``, ``box``, ``points`` or ``mask`` on conditioning frames.
    crop : bool
        Crop around the prompt (see :mod:`.crop`); ``crop_context`` is the inference context.
    steps, batch, lr, weight_decay, warmup, min_lr_ratio, grad_clip, trunk_lr_scale, layer_decay
        Optimisation (AdamW, linear warm-up over ``warmup`` steps then cosine to ``min_lr_ratio``).
    val_every, save_every_s, log_every : int
        Validation period in steps, state-save period in seconds, loss log period in steps.
    loss_weights : (focal, dice, iou, obj_score)
        Loss weights (SAM2's 20, 1, 1, 1 by default); ``focal_alpha`` < 0 disables the class weighting.
    max_minutes : float, optional
        Stop (and save) after this wall time even if ``steps`` is not reached.
    """

    data: list[str]
    out: str
    val: list[str] | int | float = 1
    val_data: list[str] = field(default_factory=list)
    data_weights: list[float] | None = None
    model: str = "sam2.1-tiny"
    checkpoint: str | None = None
    random_init: bool = False
    image_size: int | None = None
    device: str = "auto"
    preset: Preset = Preset.FULL
    trainable: list[str] = field(default_factory=list)
    lora_rank: int = 4
    memory: str = "sam2"
    mode: Mode = Mode.VIDEO
    frames: int = 8
    max_objects: int = 3
    image_fraction: float = 0.0
    p_object_end: float = 0.0
    prompt: str = "mixed"
    max_correction_frames: int = 2
    max_correction_points: int = 3
    p_second_cond: float = 0.3
    detach_memory: bool = False
    crop: bool = False
    crop_context: float = 3.0
    crop_context_range: tuple[float, float] = (2.0, 4.5)
    augment: bool = True
    steps: int = 1000
    batch: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 0.1
    loss_weights: tuple[float, float, float, float] = (20.0, 1.0, 1.0, 1.0)  # focal, Dice, IoU L1, object score
    focal_alpha: float = 0.25
    trunk_lr_scale: float = 0.1
    layer_decay: float = 0.9
    activation_checkpointing: bool = False
    seed: int = 0
    val_every: int = 200
    val_objects: int = 4
    save_every_s: float = 180.0
    log_every: int = 10
    max_minutes: float | None = None
    threads: int | None = None

    def __post_init__(self):
        self.preset = Preset(self.preset)
        self.mode = Mode(self.mode)
        if self.prompt not in PROMPT_MIXES:
            raise ValueError(f"prompt must be one of {', '.join(PROMPT_MIXES)}, got {self.prompt!r}")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be at least 1")
        if self.frames < 1 or self.max_objects < 1:
            raise ValueError("frames and max_objects must be at least 1")

    @property
    def crop_config(self) -> CropConfig | None:
        if not self.crop:
            return None
        return CropConfig(context=self.crop_context, context_range=tuple(self.crop_context_range))

    def sample_config(self, image_size: int) -> SampleConfig:
        return SampleConfig(mode=self.mode, frames=self.frames, max_objects=self.max_objects,
                            image_fraction=self.image_fraction, p_object_end=self.p_object_end,
                            image_size=image_size, crop=self.crop_config,
                            augment=AugmentConfig() if self.augment else AugmentConfig.none())

    def loss_config(self) -> LossWeights:
        f, d, i, o = (float(w) for w in self.loss_weights)
        return LossWeights(focal=f, dice=d, iou=i, obj_score=o, alpha=float(self.focal_alpha))

    def prompt_config(self) -> ClipPromptConfig:
        p_mask, p_box, p_click = PROMPT_MIXES[self.prompt]
        return ClipPromptConfig(p_mask=p_mask, p_box=p_box, p_click=p_click, p_second_cond=self.p_second_cond,
                                max_correction_frames=self.max_correction_frames,
                                max_correction_points=self.max_correction_points,
                                detach_memory=self.detach_memory)

    def to_json(self) -> dict:
        d = asdict(self)
        d["preset"], d["mode"] = self.preset.value, self.mode.value
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
