"""SR methods under test: interpolation, SR3, regression, GANs and external models."""
