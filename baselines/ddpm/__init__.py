"""The cascade's base generator: an unconditional (or class-conditional) DDPM on small images (`ddpm:CKPT`).

`model.py`: the denoiser, its config and the sampler (`load_ddpm`); `recipe.py`: the training recipe for the one
loop (kept apart so that sampling never imports the training loop).
"""

from baselines.ddpm.model import DDPMBase, DDPMConfig, DDPMDenoiser, ddpm_config_from_dict, load_ddpm

__all__ = ["DDPMBase", "DDPMConfig", "DDPMDenoiser", "ddpm_config_from_dict", "load_ddpm"]
