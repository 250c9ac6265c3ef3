"""pydantic models for the sections of params.yaml (everything except the methods)."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# Learning rates (absolute, or c in c / lambda_0): above 1e6 is a typo, not an experiment.
LearningRate = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]
WeightDecay = Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]
AdamEps = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
UnitInterval = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, lt=2**31)]
# Counts: at least 1, and bounded so that a huge number (1e30) is an error here, not an overflow mid-sweep.
Count = Annotated[int, Field(ge=1, le=10**9)]
StepCount = Annotated[int, Field(ge=1, le=10_000_000)]
StepsOrZero = Annotated[int, Field(ge=0, le=10_000_000)]


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


IMAGE_DATASETS = ("digits", "cifar10", "cifar100", "mnist", "fashion_mnist")
TEXT_DATASETS = ("wikitext2", "wikitext103", "synthetic_text")
DatasetName = Literal[
    "digits", "cifar10", "cifar100", "mnist", "fashion_mnist", "wikitext2", "wikitext103", "synthetic_text"
]
DEFAULT_VOCAB_SIZE, DEFAULT_CONTEXT = 4096, 64


class DataConfig(Strict):
    dataset: DatasetName = Field(
        "digits",
        description="Images: digits (ships with scikit-learn), cifar10, cifar100, mnist, fashion_mnist (torchvision). "
        "Text (next-token windows for model.kind: transformer): wikitext2, wikitext103 (the Hugging Face hub's "
        "parquet files), synthetic_text (a corpus generated from a fixed seed, offline).",
    )
    root: str = Field(
        "data/raw", min_length=1, description="Folder of the downloaded datasets (read, or downloaded into)."
    )
    download: bool = Field(True, description="Download datasets that are not in `root`.")
    num_examples: Count | None = Field(
        None,
        description="Random subset of the training split (None: all), before validation_fraction is held out; for "
        "text, a number of windows.",
    )
    num_test_examples: Count | None = Field(
        None, description="Random test subset size (None: all); for text also the validation split's."
    )
    test_fraction: Fraction = Field(0.2, description="Held-out fraction for datasets without a test split.")
    validation_fraction: Fraction = Field(
        0.1,
        description="Fraction of the training examples held out (never trained on) to choose best settings; the "
        "test set only scores them (docs/science.md section 7). Text datasets use their own validation split.",
    )
    split_seed: Seed = 0
    vocab_size: Annotated[int, Field(ge=256, le=65_536)] | None = Field(
        None,
        description=f"Text: the BPE vocabulary trained on the training split (null: {DEFAULT_VOCAB_SIZE}).",
    )
    context: Annotated[int, Field(ge=2, le=8192)] | None = Field(
        None, description=f"Text: tokens per window, the model's context (null: {DEFAULT_CONTEXT})."
    )

    @model_validator(mode="after")
    def _text_keys_for_text(self) -> DataConfig:
        if self.dataset not in TEXT_DATASETS:
            for key in ("vocab_size", "context"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"{key} is a setting of the text datasets ({', '.join(TEXT_DATASETS)}), not of "
                        f"{self.dataset}; remove it"
                    )
        return self

    @property
    def is_text(self) -> bool:
        return self.dataset in TEXT_DATASETS

    @property
    def resolved_vocab_size(self) -> int:
        return self.vocab_size or DEFAULT_VOCAB_SIZE

    @property
    def resolved_context(self) -> int:
        return self.context or DEFAULT_CONTEXT


class FCNConfig(Strict):
    kind: Literal["fcn"] = "fcn"
    depth: Annotated[int, Field(ge=1, le=64)] = Field(4, description="Number of linear layers.")
    width: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    activation: Literal["relu", "tanh", "linear"] = "relu"
    bias: bool = False
    parametrization: Literal["sp", "mup"] = "sp"


class CNNConfig(Strict):
    """Myrtle-style CNN: conv blocks doubling the channels with 2x2 average pooling, no normalization."""

    kind: Literal["cnn"] = "cnn"
    channels: Annotated[int, Field(ge=1, le=4096)] = 32
    depth: Annotated[int, Field(ge=1, le=6)] = Field(3, description="Number of pooling stages.")
    activation: Literal["relu", "tanh", "linear"] = "relu"


class WRNConfig(Strict):
    """WideResNet with LayerNorm over channels in place of BatchNorm (as in the authors' code)."""

    kind: Literal["wrn"] = "wrn"
    depth: Annotated[int, Field(ge=10, le=100)] = 16
    widen_factor: Annotated[int, Field(ge=1, le=20)] = 4

    @field_validator("depth")
    @classmethod
    def _depth_is_6n_plus_4(cls, depth: int) -> int:
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 (10, 16, 22, 28, ...), got {depth}")
        return depth


class TransformerConfig(Strict):
    """GPT-2-style decoder-only Transformer (whywarmup.transformer) for the text datasets; its vocabulary and context
    are the data's (data.vocab_size, data.context)."""

    kind: Literal["transformer"] = "transformer"
    depth: Annotated[int, Field(ge=1, le=48)] = Field(4, description="Number of Transformer blocks.")
    width: Annotated[int, Field(ge=1, le=16384)] = Field(128, description="Embedding width d_model.")
    heads: Annotated[int, Field(ge=1, le=256)] = Field(4, description="Attention heads (must divide width).")
    norm_position: Literal["pre", "post"] = Field("pre", description="LayerNorm before (Pre-LN) or after each branch.")
    final_norm: bool = Field(
        True, description="LayerNorm before the readout (false: the paper's ~100x sharper initialization)."
    )
    position: Literal["sinusoidal", "learned"] = Field("sinusoidal", description="Position embedding.")
    parametrization: Literal["sp", "mup"] = Field("sp", description="mup: readout x 1/sqrt(width).")

    @field_validator("heads")
    @classmethod
    def _heads_divide_width(cls, heads: int, info: ValidationInfo) -> int:
        width = info.data.get("width")  # absent when the width itself is invalid (named there)
        if width is not None and width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}; use a divisor of the width")
        return heads


def _fcn_when_no_kind(value: object) -> object:
    """`model:` without `kind` is the default FCN (so `model: {width: 512}` works and a typo in it is named)."""
    return {"kind": "fcn", **value} if isinstance(value, dict) and "kind" not in value else value


ModelConfig = Annotated[
    FCNConfig | CNNConfig | WRNConfig | TransformerConfig,
    Field(discriminator="kind"),
    BeforeValidator(_fcn_when_no_kind),
]


class TrainingConfig(Strict):
    loss: Literal["mse", "cross_entropy"] = "mse"
    steps: StepCount = 1000
    batch_size: Count | None = Field(None, description="Minibatch size; None = full-batch GD.")
    data_seed: Seed = Field(0, description="Seed of the minibatch order (separate from the init seed).")
    augment: Literal["none", "flip_crop"] = Field(
        "none",
        description="flip_crop: each training batch flipped left-right (p = 1/2) and shifted by a random crop of the "
        "4-pixel padded image (the paper's CIFAR WideResNet runs). Sharpness measurements use unaugmented data, "
        "except measure_on: minibatch, which measures on the update's own (augmented) batch.",
    )
    mixup_alpha: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = Field(
        0.0,
        description="mixup after the augmentation (the authors' WideResNet runs): each training batch is mixed with a "
        "seeded permutation of itself, x = lam x + (1 - lam) x[perm], soft targets likewise, lam ~ Beta(alpha, alpha) "
        "per batch; 0 = off.",
    )
    eval_every: StepCount = Field(100, description="Test-set evaluation every this many steps and at the end.")
    divergence_factor: Annotated[float, Field(gt=1, le=1e12, allow_inf_nan=False)] = Field(
        1e6,
        description="A run diverges when its loss is NaN/Inf or exceeds this factor times the initial loss.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    deterministic: bool = Field(
        False,
        description="Deterministic algorithms only (torch.use_deterministic_algorithms, no cuDNN autotuning, "
        "CUBLAS_WORKSPACE_CONFIG): bitwise-repeatable GPU runs at some speed. CPU runs are repeatable either way.",
    )
    threads: Annotated[int, Field(ge=0, le=1024)] = Field(
        1,
        description="torch intra-op threads per run on CPU (0: torch's default). Results depend on it in the "
        "last bits (reduction order), so it is part of a run's config; parallelism comes from executor.workers.",
    )


class CriticalLRConfig(Strict):
    """The loss-catapult search for the critical learning rate at initialization (docs/science.md section 5)."""

    enabled: bool = True
    eps: Annotated[float, Field(gt=0, lt=1)] = Field(0.01, description="Catapult: one-step loss > L_0 (1 + eps).")
    tol: Annotated[float, Field(gt=0, lt=1)] = Field(0.05, description="Bisection stops at (upper-lower)/upper < tol.")
    eta_0: LearningRate = Field(1e-4, description="First learning rate probed (then doubled).")


class SharpnessConfig(Strict):
    every: StepsOrZero = Field(
        10,
        description="Measure the top Hessian eigenvalue every this many steps (0: only at initialization).",
    )
    dense_until: StepsOrZero = Field(
        0, description="Also measure at every step s <= dense_until (the early catapults of warmup)."
    )
    every_after_warmup: StepsOrZero | None = Field(
        None,
        description="Once the learning rate has reached eta_trgt, measure every this many steps instead of `every` "
        "(null: `every` throughout; 0: only at the end). The claims read the sharpness during warmup and at its end.",
    )
    measure_on: Literal["subset", "train", "minibatch", "minibatches_mean"] = Field(
        "subset",
        description="subset: a fixed random subset of the training set; train: all of it; minibatch: the "
        "minibatch of the next update (the authors' per-step measurement); minibatches_mean: the mean of the top "
        "eigenvalues on num_minibatches fixed minibatches of training.batch_size (the authors' lambda_0).",
    )
    subset_size: Count = Field(1024, description="Examples in the fixed subset (measure_on: subset).")
    num_minibatches: Annotated[int, Field(ge=1, le=1000)] = Field(
        10, description="K, the number of fixed minibatches averaged (measure_on: minibatches_mean)."
    )
    subset_seed: Seed = 0
    chunk_size: Count = Field(4096, description="Examples per forward pass during a measurement.")
    hvp: Literal["auto", "cached-reverse", "forward-over-reverse", "reverse-over-reverse"] = Field(
        "auto",
        description="How Hessian-vector products are computed. auto: one chunk -> the gradient graph is built "
        "once per measurement (cached-reverse); several chunks -> forward-over-reverse on CUDA, double backward "
        "(reverse-over-reverse) on CPU. Forward-over-reverse falls back to double backward for unsupported ops.",
    )
    tol: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    max_matvecs: Annotated[int, Field(ge=2, le=10_000)] = 100
    dtype: Literal["model", "float64"] = Field("model", description="float64: measure in double precision.")
    critical_every: StepsOrZero = Field(
        1,
        description="Critical sharpness lambda_c = 2 / eta_c along the next update (forward passes only, on the "
        "step's batch) every this many steps (0: never).",
    )
    critical_tol: Annotated[float, Field(gt=0, lt=1)] = Field(
        1 / 16, description="The critical sharpness's search stops when 1 - lower / upper < critical_tol."
    )
    critical_lr: CriticalLRConfig = Field(
        default_factory=CriticalLRConfig,
        description="Catapult search at initialization, on the first chunk_size examples of the measurement set.",
    )


class TrackingConfig(Strict):
    uri: str = Field(
        "sqlite:///mlflow.db",
        min_length=1,
        description="MLflow tracking URI; a relative sqlite path is resolved against the project root. "
        "The MLFLOW_TRACKING_URI environment variable overrides it.",
    )
    experiment: str = Field("whywarmup", min_length=1)
    log_every: StepCount = Field(1, description="Per-step metrics are logged every this many steps.")
    system_metrics: bool = Field(
        False,
        description="Log MLflow's system metrics (CPU, memory, disk, network; GPU utilization and memory where "
        "nvidia-ml-py is installed) to each method's parent run while its stage runs.",
    )
    system_metrics_every_s: Annotated[float, Field(ge=0.1, le=3600, allow_inf_nan=False)] = Field(
        10.0, description="Seconds between two system-metrics samples."
    )


class ExecutorConfig(Strict):
    """Where the grid points of a method run. Not part of any run's config: results do not depend on it."""

    kind: Literal["local", "ray"] = "local"
    workers: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        None,
        description="local: worker processes per method (None: one per CPU core; 1: in the stage's own process). "
        "ray: the most grid points in flight (None: as many as the cluster's resources hold).",
    )
    address: str | None = Field(
        None,
        description="ray: the cluster to join, e.g. 'auto' (a `ray start --head` on this machine) or "
        "'ray://host:10001'; None starts a local Ray instance for the stage.",
    )
    num_cpus: Annotated[float, Field(gt=0, le=1024, allow_inf_nan=False)] = Field(
        1.0, description="ray: CPUs each grid point's task reserves."
    )
    num_gpus: Annotated[float, Field(ge=0, le=64, allow_inf_nan=False)] = Field(
        0.0,
        description="ray: GPUs each grid point's task reserves; a fraction packs several runs on one GPU (0.25: "
        "four). Above 1 a whole number.",
    )
    local_cpus: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        None, description="ray with no address: CPUs of the local Ray instance (None: all cores)."
    )
    max_retries: Annotated[int, Field(ge=0, le=100)] = Field(
        3,
        description="ray: times a grid point is run again when its worker or node is lost (Ray's retry on a system "
        "failure; an error in the training code is never retried).",
    )

    @field_validator("num_cpus", "num_gpus")
    @classmethod
    def _ray_resource_quantity(cls, value: float) -> float:
        # Ray's rule: a fraction of one unit (to 1e-4), or whole units
        if value > 1 and value != int(value):
            raise ValueError(f"{value:g}: above 1 Ray takes only whole numbers (a fraction packs runs: 0.5, 0.25)")
        if 0 < value < 1 and abs(value * 10_000 - round(value * 10_000)) > 1e-6:
            raise ValueError(f"{value:g}: Ray splits a unit in steps of 0.0001 at the finest")
        return value

    def resolved_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        return cpu_count()


def cpu_count() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ReportConfig(Strict):
    title: str = "Why warmup the learning rate? Reproduction report"
    trajectory_method: str | None = Field(
        None, description="Method whose runs make the Fig.-1-style trajectory figure (default: first linear)."
    )
    max_trajectories: Annotated[int, Field(ge=1, le=12)] = 4


class SGDConfig(Strict):
    name: Literal["sgd"] = "sgd"
    momentum: UnitInterval = 0.0
    nesterov: bool = False
    weight_decay: WeightDecay = 0.0

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDConfig:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: true needs momentum > 0 (torch.optim.SGD refuses it otherwise)")
        return self

    def describe(self) -> str:
        nesterov = ", Nesterov" if self.nesterov else ""
        return f"SGD (momentum {self.momentum:g}{nesterov}, weight decay {self.weight_decay:g})"


class AdamConfig(Strict):
    name: Literal["adam", "radam"] = "adam"
    beta1: UnitInterval = 0.9
    beta2: UnitInterval = 0.999
    eps: AdamEps = 1e-8
    weight_decay: WeightDecay = 0.0

    def describe(self) -> str:
        label = {"adam": "Adam", "radam": "RAdam"}[self.name]
        betas = f"beta1 {self.beta1:g}, beta2 {self.beta2:g}"
        return f"{label} ({betas}, eps {self.eps:g}, weight decay {self.weight_decay:g})"


class GIAdamConfig(Strict):
    """GI-Adam (docs/science.md section 6): Adam with v_0 = g_0^2 (whywarmup.optim.GIAdam)."""

    name: Literal["gi_adam"] = "gi_adam"
    beta1: UnitInterval = 0.9
    beta2: UnitInterval = 0.999
    eps: AdamEps = 1e-8
    weight_decay: WeightDecay = 0.0
    v_bias_correction: bool = Field(
        True,
        description="true: keep Adam's bias correction of v (the authors' released code); false: none, as the "
        "seed reads 'GI eliminates the need for bias correction'.",
    )

    def describe(self) -> str:
        correction = "with" if self.v_bias_correction else "without"
        return (
            f"GI-Adam (v_0 = g_0^2, {correction} bias correction of v; beta1 {self.beta1:g}, beta2 {self.beta2:g}, "
            f"eps {self.eps:g}, weight decay {self.weight_decay:g})"
        )


OptimizerConfig = Annotated[SGDConfig | AdamConfig | GIAdamConfig, Field(discriminator="name")]
