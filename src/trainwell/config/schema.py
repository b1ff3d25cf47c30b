"""The run configuration: one typed, validated, frozen section per concern.

Every field carries its meaning (and unit) in its description; ``trainwell config show``
prints the resolved defaults. Cross-field rules live in :meth:`Config._cross_checks`, each
error naming the rule, the values found and the fix.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .bounds import (
    MAX_LIST,
    MAX_SAMPLES,
    MAX_UNITS,
    Activation,
    BiasInitializer,
    Bool,
    Float,
    Initializer,
    Int,
    Name,
    OptimizerName,
    OptionalActivation,
    ScheduleName,
    Target,
    Text,
    check_free_form,
    check_model_size,
)

_Units = Annotated[Int, Field(gt=0, le=MAX_UNITS)]
_Fraction = Annotated[Float, Field(ge=0, lt=1)]
_MAX_EPOCHS = 100_000
_MAX_BATCH = 10_000_000

__all__ = ["Config", "DataConfig", "AugmentConfig", "ModelConfig", "OptimConfig", "ClipConfig",
           "ScheduleConfig", "PlateauConfig", "RegularizationConfig", "TrainConfig",
           "EarlyStoppingConfig", "BestConfig", "LogConfig", "TransferConfig", "PretrainConfig"]

_Pool = Literal["max", "avg", "none"] | None
_Padding = Annotated[Int, Field(ge=0, le=64)] | Literal["same"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Where the data come from and how they are prepared."""

    source: Text = Field("mnist1d", description="mnist1d, digits, synthetic, idx:PATH, npz:PATH, "
                        "cifar10:PATH, mnist or fashion-mnist")
    num_samples: Int | None = Field(20000, gt=0, le=MAX_SAMPLES, description="samples to generate (mnist1d, "
                                    "synthetic); ignored by file sources")
    val_fraction: Float = Field(0.1, ge=0, le=0.9, description="share of the training split "
                                "held out for validation")
    standardize: Bool = Field(True, description="standardize features with training-split "
                              "statistics")
    input_scale: Float = Field(1.0, gt=0, le=1e6, description="multiply all inputs by this after "
                               "standardization (100 reproduces unnormalized inputs)")
    download: Bool = Field(False, description="download mnist / fashion-mnist to the cache if "
                           "absent (SHA-256 checked)")
    classes: list[Annotated[Int, Field(ge=0, le=MAX_UNITS)]] | None = Field(None, max_length=MAX_LIST, description="keep only these classes, relabelled "
                                      "0..k-1 in the order given")
    options: dict[str, Any] = Field(default_factory=dict, description="source-specific options, "
                                    "e.g. {kind = \"moons\", noise = 0.2} for synthetic")
    target: Target | None = Field(None, description="your own data: \"package.module:make\", a "
                                  "callable returning a trainwell Dataset, a (train, val[, test]) "
                                  "pair/triple of torch Datasets or DataLoaders; replaces source")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for "
                                   "data.target")
    augment: AugmentConfig | None = Field(None, description="random crop + flip of image "
                                          "batches on the device (training only)")

    _free_form = field_validator("options", "kwargs")(
        classmethod(lambda cls, v: check_free_form(v)))


class AugmentConfig(_Section):
    """Standard image augmentation, drawn per batch from the run's seed (exact resume)."""

    crop_padding: Int = Field(4, ge=0, le=16, description="zero padding of the random crop, "
                              "pixels; 0 = no crop")
    flip: Bool = Field(True, description="random horizontal flip with probability 0.5")


class ModelConfig(_Section):
    """The network: an MLP, a CNN or a ResNet built by trainwell.nn, or your own (target)."""

    kind: Literal["mlp", "cnn", "resnet"] = Field("mlp", description="mlp, cnn (1-D or 2-D "
                                                  "from the data's shape) or resnet (images)")
    target: Target | None = Field(None, description="your own model: \"package.module:build\", a "
                                  "callable returning an nn.Module; replaces kind")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for "
                                   "model.target")
    depth: Int = Field(8, ge=0, le=MAX_LIST, description="hidden layers of the MLP")
    width: _Units = Field(256, description="units per hidden layer")
    hidden: list[_Units] | None = Field(None, max_length=MAX_LIST, description="explicit hidden sizes; overrides "
                                     "depth × width")
    activation: Activation = Field("relu", description="hidden activation (trainwell.nn.ACTIVATIONS)")
    init: Initializer = Field("auto", description="initializer name, constant:V, uniform:A, "
                      "normal:S, or auto = by activation (Glorot/He/LeCun)")
    bias_init: BiasInitializer = Field("zeros", description="hidden-layer biases: zeros, "
                                       "constant:V, uniform:A or normal:S")
    head_init: Initializer | None = Field(None, description="the output layer's initializer; "
                                          "none = Glorot under init = auto, else as init")
    reinit: Bool = Field(False, description="re-initialize your own model (model.target) "
                         "after building it, walking its Linear/Conv modules: hidden weights "
                         "by init (auto = by activation), hidden biases by bias_init, the head "
                         "by head_init; trainwell's own models are always initialized so")
    swap_activation: OptionalActivation = Field(None, description="replace your own model's "
                                                "(model.target) hidden activation modules "
                                                "(nn.Sigmoid, nn.Tanh, … or your own module "
                                                "computing one) by this activation after "
                                                "building it; activations written in forward "
                                                "and the output's stay; none = keep them")
    dropout: Float = Field(0.0, ge=0, lt=1, description="dropout rate after each hidden layer")
    batch_norm: Bool = Field(False, description="batch normalization before each activation")
    output_activation: OptionalActivation = Field(None, description="activation on the output layer; "
                                          "none = logits")
    out_features: _Units | None = Field(None, description="output units; none = from the data")
    channels: list[_Units] = Field([16, 32], max_length=MAX_LIST, description="conv channels per "
                                   "block (cnn), or widths per stage (resnet)")
    kernel_size: Annotated[Int, Field(gt=0, le=64)] | list[Annotated[Int, Field(gt=0, le=64)]] = Field(
        3, description="conv kernel size (cnn): one for all blocks or one per block")
    stride: Annotated[Int, Field(gt=0, le=64)] | list[Annotated[Int, Field(gt=0, le=64)]] = Field(
        1, description="conv stride (cnn): one for all blocks or one per block")
    padding: _Padding | list[_Padding] = Field("same", description="conv padding (cnn): an int "
                                               "or same (= kernel // 2), one or one per block")
    pool: _Pool | list[Literal["max", "avg", "none"]] = Field("max", description="2x pooling after a conv block (cnn): "
                                      "max, avg or none, one or one per block")
    blocks: list[Annotated[Int, Field(gt=0, le=64)]] | None = Field(
        None, max_length=MAX_LIST, description="residual blocks per stage (resnet); none = 1 each")

    @model_validator(mode="after")
    def _fits_in_memory(self) -> ModelConfig:
        hidden = list(self.hidden) if self.hidden is not None else [self.width] * self.depth
        try:
            kernel = max(self.kernel_size) if isinstance(self.kernel_size, list) else self.kernel_size
            check_model_size(self.kind, hidden, list(self.channels), kernel, self.batch_norm)
        except ValueError as e:
            field = "model.kind" if self.kind == "cnn" else (
                "model.hidden" if self.hidden is not None else "model.width")
            raise ValueError(f"{field}: {e}") from None
        return self


class ClipConfig(_Section):
    """Gradient clipping, applied after backward and before the optimizer step."""

    kind: Literal["none", "value", "global_norm", "tensor_norm", "adaptive"] = Field(
        "none", description="none, value, global_norm, tensor_norm (Keras clipnorm) or adaptive (AGC)")
    threshold: Float = Field(1.0, gt=0, le=1e6, description="clip value, max norm, or AGC ratio λ")


class OptimConfig(_Section):
    """The optimizer; fields left unset take the optimizer's own defaults."""

    name: OptimizerName = Field("adam", description="sgd, momentum, nesterov, adagrad, rmsprop, adam, "
                      "adamw, nadam, adamax")
    lr: Float = Field(3e-3, gt=0, le=100, description="learning rate η (the schedule's peak when one is set)")
    momentum: Float | None = Field(None, ge=0, lt=1, description="β of Momentum/Nesterov")
    beta: Float | None = Field(None, ge=0, lt=1, description="RMSProp's decay β")
    betas: tuple[_Fraction, _Fraction] | None = Field(None, description="(β1, β2) of the Adam family")
    eps: Float | None = Field(None, gt=0, le=1, description="ε of adaptive optimizers")
    weight_decay: Float = Field(0.0, ge=0, le=10, description="L2 weight decay (decoupled for adamw)")
    convention: Literal["lecture", "torch", "keras"] | None = Field(
        None, description="whose formulas: lecture (default), torch or keras")
    clip: ClipConfig = Field(default_factory=ClipConfig)


class PlateauConfig(_Section):
    """The performance (reduce-on-plateau) controller, composable with any schedule."""

    factor: Float = Field(0.5, gt=0, lt=1, description="multiply the LR by this on a plateau")
    patience: Int = Field(3, ge=0, le=_MAX_EPOCHS, description="epochs without improvement before reducing")
    min_lr: Float = Field(0.0, ge=0, le=100, description="never go below this LR")


class ScheduleConfig(_Section):
    """The learning-rate schedule, a pure function of the step (or epoch)."""

    name: ScheduleName = Field("one_cycle", description="constant, power, exponential, piecewise, cosine "
                      "or one_cycle")
    unit: Literal["step", "epoch"] = Field("step", description="advance per batch or per epoch")
    params: dict[str, Any] = Field(default_factory=dict, description="the schedule's arguments; "
                                   "lr0 / max_lr default to optim.lr, total_steps to the run's length")
    plateau: PlateauConfig | None = Field(None, description="add the performance controller")

    _free_form = field_validator("params")(classmethod(lambda cls, v: check_free_form(v)))


class RegularizationConfig(_Section):
    """Weight penalties and constraints (dropout lives in the model section)."""

    l1: Float = Field(0.0, ge=0, le=10, description="λ1 · Σ|w| added to the loss (weights only)")
    l2: Float = Field(0.0, ge=0, le=10, description="λ2 · Σw² added to the loss (weights only)")
    max_norm: Float | None = Field(None, gt=0, le=1e6, description="max L2 norm of each unit's incoming "
                                   "weights, applied after every step")


class TrainConfig(_Section):
    """The training loop."""

    epochs: Int = Field(20, gt=0, le=_MAX_EPOCHS, description="passes over the training split")
    batch_size: Int = Field(128, gt=0, le=_MAX_BATCH, description="samples per step")
    loss: Literal["auto", "cross_entropy", "nll", "bce", "bce_logits", "mse", "mae", "huber"] = Field(
        "auto", description="auto = cross_entropy for classes, mse for regression; nll takes "
        "log-probabilities (as in torch)")
    checkpoint_every: Int = Field(1, gt=0, le=_MAX_EPOCHS, description="epochs between checkpoints")
    checkpoint_every_steps: Int | None = Field(
        None, gt=0, le=1_000_000_000, description="also checkpoint every this many optimizer "
        "steps inside an epoch, so --resume continues at the next batch; none = epoch ends only "
        "(an IterableDataset always restarts its epoch)")
    log_grad_norm: Bool = Field(False, description="log the global gradient norm without clipping")
    threads: Int | None = Field(None, gt=0, le=256, description="CPU threads for torch; none = torch's default")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast dtype of the forward pass; fp16 adds a GradScaler "
        "(loss scaling), bf16 needs none")
    accumulate: Int = Field(1, ge=1, le=4096, description="micro-batches of batch_size per "
                            "optimizer step: the gradient of one batch of accumulate × batch_size")
    sync_batch_norm: Bool = Field(False, description="under torchrun on GPUs, batch norm over the "
                                  "global batch (SyncBatchNorm); an error on the CPU, a no-op in "
                                  "one process")
    compile: Bool = Field(False, description="run the model through torch.compile; falls back "
                          "to the plain model with one warning where compile is unavailable")
    rollback_every: Int | None = Field(None, gt=0, le=1_000_000, description="keep a copy of the "
                                       "weights every this many steps and restore it after a "
                                       "non-finite loss (the doctor's rollback repair)")
    early_stopping: EarlyStoppingConfig | None = Field(None, description="stop when the monitored "
                                                       "metric stops improving")
    best: BestConfig | None = Field(None, description="keep checkpoints/best.* of the best epoch")
    log: LogConfig = Field(default_factory=lambda: LogConfig(), description="CSV and TensorBoard logs")


_Monitor = Literal["val_loss", "val_accuracy", "train_loss", "train_accuracy"]


class EarlyStoppingConfig(_Section):
    """Early stopping on a monitored metric (trainwell.train.EarlyStopping)."""

    patience: Int = Field(5, ge=1, le=_MAX_EPOCHS, description="epochs without improvement")
    restore_best: Bool = Field(True, description="put the best epoch's weights back at the end")
    monitor: _Monitor = Field("val_loss", description="the metric watched")
    mode: Literal["min", "max"] = Field("min", description="min for losses, max for accuracies")
    min_delta: Float = Field(0.0, ge=0, le=1e6, description="smallest change that counts")


class BestConfig(_Section):
    """Best-model checkpointing (trainwell.train.BestCheckpoint)."""

    monitor: _Monitor = Field("val_loss", description="the metric watched")
    mode: Literal["min", "max"] = Field("min", description="min for losses, max for accuracies")
    min_delta: Float = Field(0.0, ge=0, le=1e6, description="smallest change that counts")


class LogConfig(_Section):
    """Loggers beside metrics.jsonl."""

    csv: Bool = Field(False, description="metrics.csv, one row per epoch")
    csv_steps: Bool = Field(False, description="also steps.csv, one row per step")
    tensorboard: Bool = Field(False, description="TensorBoard event files in tensorboard/ "
                              "(pip install 'trainwell[tensorboard]')")
    tensorboard_steps: Bool = Field(True, description="per-step scalars in TensorBoard")
    tensorboard_doctor: Bool = Field(False, description="the doctor's per-layer gradient norms "
                                     "as TensorBoard scalars and histograms")


class TransferConfig(_Section):
    """Reuse layers of an earlier run (see trainwell.transfer)."""

    from_: Text | None = Field(None, alias="from", description="run folder or .safetensors file "
                              "to reuse layers from")
    n_layers: Int | None = Field(None, ge=0, le=MAX_LIST, description="hidden layers to reuse; none = all")
    freeze_epochs: Int = Field(0, ge=0, le=_MAX_EPOCHS, description="epochs with reused layers frozen first")
    fine_tune_lr_factor: Float = Field(0.1, gt=0, le=100, description="multiply every learning rate by "
                                       "this when the reused layers unfreeze after freeze_epochs; "
                                       "no effect when freeze_epochs = 0")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PretrainConfig(_Section):
    """Unsupervised autoencoder pretraining of the MLP's hidden layers (trainwell pretrain)."""

    method: Literal["layerwise", "stacked", "both"] = Field(
        "layerwise", description="greedy layer-wise, whole stacked autoencoder, or both in turn")
    epochs: Int = Field(5, gt=0, le=_MAX_EPOCHS, description="epochs per hidden layer (layer-wise)")
    stacked_epochs: Int = Field(10, gt=0, le=_MAX_EPOCHS, description="epochs of the stacked autoencoder")
    lr: Float = Field(1e-3, gt=0, le=100, description="learning rate of the autoencoders")
    batch_size: Int = Field(128, gt=0, le=_MAX_BATCH, description="samples per step")
    noise: Literal["none", "gaussian", "mask"] = Field("none", description="denoising corruption")
    noise_level: Float = Field(0.1, ge=0, le=100, description="Gaussian std, or masking probability (< 1)")
    tied: Bool = Field(False, description="decoder uses the transposed encoder weights")
    optimizer: OptimizerName = Field("adam", description="optimizer name for the autoencoders")


class Config(_Section):
    """A whole run: ``trainwell train CONFIG`` reads one of these from TOML."""

    name: Name = Field("mnist1d-mlp", description="run name: the folder under runs/")
    seed: Int = Field(0, ge=0, le=2**32 - 1, description="seeds data splits, initialization, shuffling, dropout")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when present")
    root: Text | None = Field(None, description="folder where model.target / data.target "
                              "modules are looked up; set to the config file's folder")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        m = self.model
        if m.kind == "cnn" and not m.channels:
            raise ValueError("model.channels: a cnn needs at least one conv block; "
                             "set channels = [16, 32]")
        if self.train.loss == "bce" and m.out_features not in (None, 1):
            raise ValueError(f"train.loss: bce needs one output unit but model.out_features = "
                             f"{m.out_features}; set out_features = 1 or use cross_entropy")
        if self.schedule.unit == "epoch" and "total_steps" in self.schedule.params:
            steps = self.schedule.params["total_steps"]
            if isinstance(steps, int) and steps != self.train.epochs:
                raise ValueError(f"schedule.params.total_steps: {steps} epochs but train.epochs = "
                                 f"{self.train.epochs}; remove total_steps to fit the run")
        t = self.transfer
        if m.kind == "resnet" and (m.dropout or m.output_activation is not None):
            raise ValueError("model.kind: a resnet has no dropout or output_activation; remove "
                             "them (batch norm is built in)")
        for key in ("kernel_size", "stride", "padding", "pool"):
            value = getattr(m, key)
            if isinstance(value, list) and len(value) != len(m.channels):
                raise ValueError(f"model.{key}: {len(value)} entries for {len(m.channels)} conv "
                                 "blocks; give one value or one per entry of model.channels")
        if m.blocks is not None and len(m.blocks) != len(m.channels):
            raise ValueError(f"model.blocks: {len(m.blocks)} entries for {len(m.channels)} "
                             "stages; give one per entry of model.channels")
        monitors = [x.monitor for x in (self.train.early_stopping, self.train.best) if x]
        if any(mon.startswith("val_") for mon in monitors) and self.data.val_fraction == 0 \
                and self.data.target is None:
            raise ValueError("train.early_stopping: a val_* monitor needs a validation split; "
                             "set data.val_fraction > 0 or monitor train_loss")
        if t.from_ is None and (t.n_layers is not None or t.freeze_epochs):
            raise ValueError("transfer.from: n_layers / freeze_epochs need a source; set "
                             "transfer.from = \"runs/NAME\" or remove them")
        if t.freeze_epochs and t.freeze_epochs >= self.train.epochs:
            raise ValueError(f"transfer.freeze_epochs: {t.freeze_epochs} must be below "
                             f"train.epochs = {self.train.epochs}, or nothing is fine-tuned")
        if self.pretrain.noise == "mask" and self.pretrain.noise_level >= 1:
            raise ValueError(f"pretrain.noise_level: a masking probability must be < 1, got "
                             f"{self.pretrain.noise_level}")
        return self
