"""placeholder"""
__all__ = ["MaxNorm", "max_norm_", "mc_predict"]
MaxNorm = max_norm_ = mc_predict = None
