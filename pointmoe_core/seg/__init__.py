"""Point-MoE semantic segmentation: PTv3 backbone with a sparse Mixture-of-Experts attention projection."""
