"""Doctor thresholds: every number the rules in :mod:`trainwell.doctor.rules` compare against.

Each constant carries its reasoning and the measurement that set it (2-core CPU,
trainwell's MLP/CNN, the configs in ``cases/``). :data:`THRESHOLDS` collects them all by
name; :mod:`trainwell.doctor.rules` re-exports every name here.
"""

from __future__ import annotations

__all__ = [
    "THRESHOLDS",
    "FAIL_GAP_SHARE",
    "FAIL_LOSS_SHARE",
    "NEAR_CHANCE_SHARE",
    "OVERREG_DROPOUT",
    "OVERREG_L1",
    "OVERREG_L2",
    "VANISHING_RATIO",
    "VANISHING_ABS",
    "EXPLODING_RATIO",
    "EXPLODING_ABS",
    "DEAD_SHARE",
    "SATURATED_SHARE",
    "SYMMETRY_SPREAD",
    "LR_LOW_UPDATE",
    "FLAT_LOSS_DROP",
    "OSCILLATION_SHARE",
    "LOSS_WINDOWS",
    "LR_HIGH_UPDATE",
    "LR_PEAK_UPDATE",
    "INPUT_SCALE",
    "OVERFIT_RISE",
    "OVERFIT_PATIENCE",
    "OVERFIT_HELD",
    "OVERFIT_ACC_DROP",
    "OVERFIT_GAP",
    "OVERFIT_BIG_RISE",
    "OVERFIT_STILL_GAINING",
    "MEMORIZED_ACC",
    "MEMORIZED_LOSS_SHARE",
    "FAIL_YARDSTICK_SHARE",
    "BOUNDED_HEADS",
    "TARGET_MARGIN",
]

# ---- learning status --------------------------------------------------------------
# A run "fails to learn" when its last validation accuracy has closed less than this share
# of the gap from chance (1/C) to 100%. Measured on cases/ after the diagnostic budget:
# healthy controls close ≥ 0.78 of the gap (moons 0.89 acc, deep tanh 0.90, deep SELU
# 0.90), broken runs ≤ 0.34 (CNN sigmoid/N(0,1) 0.41 acc on 10 classes); 0.4 sits between.
FAIL_GAP_SHARE = 0.4
# …or its training loss ends above this share of the chance loss ln(C) (a net at chance
# sits at ~1.0; healthy diagnostic runs end ≤ 0.5; batch-1 momentum on moons ends at ~1).
FAIL_LOSS_SHARE = 0.8
# With the yardstick known (the same net with a known-good recipe, trained to the same early
# budget): the run also fails to learn when it has closed less than this share of the gap
# from chance to the yardstick's accuracy. A 3-class run at 0.695 beside a recipe at ~0.95
# closes 0.59; healthy fast cases close ≥ 1.0 of it (relu/adam 0.95 vs 0.91, moons 0.89 vs
# 0.87 after 3 epochs).
FAIL_YARDSTICK_SHARE = 0.8

# ---- gradients ----------------------------------------------------------------------
# First-layer / head gradient-norm ratio. Healthy deep tanh (Glorot, 20 layers): ~3e-2;
# sigmoid/Glorot 20+ layers: 1e-6 and below. 1e-3 splits them with margin both ways.
VANISHING_RATIO = 1e-3
# Absolute first-layer gradient norm below which it is vanishing whatever the ratio.
VANISHING_ABS = 1e-8
# First/last ratio above which gradients explode (deep tanh N(0,1): ratios in the
# hundreds; healthy nets 0.1–10).
EXPLODING_RATIO = 100.0
# A global gradient norm this large is exploding regardless of the ratio (healthy runs
# stay below ~50 with standardized inputs and cross-entropy).
EXPLODING_ABS = 1e4

# ---- units ----------------------------------------------------------------------------
# Share of ReLU units dead for a whole probe batch in the worst layer. He-initialized
# healthy nets: < 0.1; SGD with lr ≥ 1 or a negative bias shift: > 0.6.
DEAD_SHARE = 0.5
# Share of saturated sigmoid/tanh entries in the worst layer. Glorot tanh/sigmoid: < 0.1;
# N(0,1) sigmoid deep nets: > 0.6.
SATURATED_SHARE = 0.5
# Units identical to each other: ‖W − mean_row‖/‖W‖ below this (float32 noise ~1e-7).
SYMMETRY_SPREAD = 1e-5

# ---- learning rate ------------------------------------------------------------------
# ‖ΔW‖/‖W‖ per step of the head (whose gradients never vanish). The rule of thumb is
# ~1e-3; lr = 1e-10 measures ~1e-9 and lr = 1e-5 with SGD ~1e-6.
LR_LOW_UPDATE = 1e-5
# Relative drop of the training loss over the diagnostic budget under which it is "flat".
FLAT_LOSS_DROP = 0.05
# Loss oscillation: share of successive loss windows that go *up* by > 10%.
# Healthy runs: ≤ 0.25 (noise around the end); lr 1–10 or bs 1 + momentum: ≥ 0.4.
OSCILLATION_SHARE = 0.4
LOSS_WINDOWS = 10
# Median update ratio ‖ΔW‖/‖W‖ of the most-updated layer above which steps are far too large
# (healthy 1e-4…1e-2; Adam at lr = 1 measures ≥ 1).
LR_HIGH_UPDATE = 0.1
# Peak ‖ΔW‖/‖W‖ of any layer at any probe step: above 1 one step moved the weights by more
# than their own size. Healthy first steps: Adam lr 3e-3 ~0.02, SGD 0.1 ≤ 0.1; Adam lr = 1
# measures 5.4 at step 0, SGD lr = 10 on a CNN 2e3 at step 1 (then all ReLUs are dead and
# the median sees only zeros).
LR_PEAK_UPDATE = 1.0

# ---- inputs -------------------------------------------------------------------------
# Standardized features have std ≈ 1; raw pixels 0–255 or ×100 inputs ≥ 50.
INPUT_SCALE = 10.0

# ---- output heads -------------------------------------------------------------------
# The range of bounded output activations; a regression target outside it (by more than
# TARGET_MARGIN of the range's width) cannot be reached by the head.
BOUNDED_HEADS: dict[str, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
}
TARGET_MARGIN = 0.05

# ---- overfitting ----------------------------------------------------------------------
# The validation loss (clean labels) ends this share above its minimum, OVERFIT_PATIENCE or
# more epochs after it (what early stopping with that patience sees within the same budget),
# while the training loss still falls. The train/val accuracy gap is evidence only: with
# noisy training labels it is measured on the noise and stays small (label-noise runs
# raised val loss 18–130% with gaps under 10%).
OVERFIT_RISE = 0.1
OVERFIT_PATIENCE = 3
# The rise must hold on each of the last OVERFIT_HELD epochs: a healthy 20-layer SELU run
# (Adam, digits) ended 26% above its best val loss (epoch 3) after 0.283 at epoch 9, 4%
# above it; the overfitting cases hold their rise on every later epoch.
OVERFIT_HELD = 2
# …and (classification) the rise costs accuracy: the validation accuracy ends OVERFIT_ACC_DROP
# below its best, or the train/val accuracy gap is OVERFIT_GAP or more, or the validation loss
# rose OVERFIT_BIG_RISE or more (label noise: 18–130%, flat accuracies; 40% sits between). A full look over 10
# epochs of healthy Adam runs sees val loss +15% and +22% above its best while the val accuracy
# still rises (gaps 4.9 and 6.0 points, test accuracy at the healthy reference): no finding.
# The small-train case overfits with a 9.7-point gap.
OVERFIT_ACC_DROP = 0.02
OVERFIT_GAP = 0.08
OVERFIT_BIG_RISE = 0.4
# …unless the validation accuracy rose this much after the loss's best epoch: early stopping
# there would cost accuracy (the default MNIST-1D 1cycle run gains 1.4 points after it).
OVERFIT_STILL_GAINING = 0.01
# …but a memorized training set is overfitting even then: training accuracy ≥ MEMORIZED_ACC,
# the training loss at most MEMORIZED_LOSS_SHARE of the validation loss, and a train/val gap
# of OVERFIT_GAP or more. overfit_small_train (15% of digits for training) at its 4-epoch
# short look: train 0.995, val 0.903 (gap 9.3 points), losses 0.026 vs 1.19 (2%); at 40
# epochs gap 9.7, 1e-5 vs 1.19. Healthy controls after their 10-epoch full look: the
# largest gap with training accuracy ≥ 0.99 is 7.2 points (custom swish, losses 0.025 vs
# 0.37: 7%); the 1-D CNN's 11.5-point gap comes with training accuracy 0.981 and losses
# 0.074 vs 0.42 (18%).
MEMORIZED_ACC = 0.99
MEMORIZED_LOSS_SHARE = 0.05

# ---- over-regularization --------------------------------------------------------------
# Penalties or dropout so strong the net cannot fit its training set: the run ends near
# chance (validation and, when known, training accuracy below chance + NEAR_CHANCE_SHARE of
# the gap to 100%) with a training loss above FAIL_LOSS_SHARE of chance's, while dropout is
# OVERREG_DROPOUT or more, or λ2 ≥ OVERREG_L2, or λ1 ≥ OVERREG_L1. The case over_regularized
# (dropout 0.9, λ2 0.5, digits) ends at 0.106 (0.22 val, 0.09 train after its 1-epoch short
# look) with a training loss 3.3× chance's; healthy runs use dropout ≤ 0.3 and λ2 ≤ 1e-3.
NEAR_CHANCE_SHARE = 0.25
OVERREG_DROPOUT = 0.5
OVERREG_L2 = 1e-2
OVERREG_L1 = 1e-3

THRESHOLDS: dict[str, float] = {
    k: v
    for k, v in globals().items()
    if k.isupper() and isinstance(v, int | float) and not isinstance(v, bool)
}
"""All thresholds by name (for reports and tests)."""
