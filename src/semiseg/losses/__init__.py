"""Loss functions shared by every method (one copy of each)."""

from semiseg.losses.consistency import entropy, kl_divergence, softmax_mse
from semiseg.losses.segmentation import as_distribution, ce_dice_loss, cross_entropy, dice_loss, one_hot

__all__ = ["as_distribution", "ce_dice_loss", "cross_entropy", "dice_loss", "entropy", "kl_divergence", "one_hot", "softmax_mse"]
