"""The validated run configuration: TOML files, ``--set`` overrides, patches."""

from __future__ import annotations

from .io import apply_patch, load_config, parse_overrides, to_dict, to_toml, validate
from .schema import (
    ClipConfig,
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    PlateauConfig,
    PretrainConfig,
    RegularizationConfig,
    ScheduleConfig,
    TrainConfig,
    TransferConfig,
)

__all__ = ["ClipConfig", "Config", "DataConfig", "ModelConfig", "OptimConfig", "PlateauConfig",
           "PretrainConfig", "RegularizationConfig", "ScheduleConfig", "TrainConfig",
           "TransferConfig", "apply_patch", "load_config", "parse_overrides", "to_dict", "to_toml",
           "validate"]
