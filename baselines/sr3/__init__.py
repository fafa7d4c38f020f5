"""SR3 (Saharia et al. 2021): schedule, loss, samplers, the γ-conditioned denoiser and the harness method."""
