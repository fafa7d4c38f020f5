"""The trainable ESRGAN-style GAN (`evalsuite train gan`): a recipe for the ONE loop in `baselines/train.py`.

Generator: RRDBNet (`baselines.gan.rrdbnet`). Discriminator: a VGG-style conv stack (ESRGAN's, without
batch norm and with global pooling, so any crop of at least 32 px works). Objective (ESRGAN, Wang et al.
2018, eq. 1-3), with x_r the HR crop, x_f = G(x_lr), C the discriminator's raw output, sigma the sigmoid:
  D_Ra(a, b) = sigma(C(a) - E[C(b)])
  L_D   = -E[log D_Ra(x_r, x_f)] - E[log(1 - D_Ra(x_f, x_r))]
  L_G   = perceptual_weight * L_percep + adv_weight * L_G^Ra + l1_weight * |G(x_lr) - x_r|_1
  L_G^Ra = -E[log(1 - D_Ra(x_r, x_f))] - E[log D_Ra(x_f, x_r)]
The perceptual term (VGG19 conv5_4 features before the ReLU) is used only when the VGG19 weights are
present (`perceptual=auto`), and `pretrain_steps` runs L1-only steps first (ESRGAN's PSNR-oriented start).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.gan.rrdbnet import RRDBNet, RRDBNetConfig
from evalsuite.options import config_from_options

if TYPE_CHECKING:  # the `gan:CKPT` method imports this module; inference does not import the training loop
    from baselines.train import Batch, StepOutput


@dataclass(frozen=True)
class GanConfig:
    """Everything that defines the GAN: generator and discriminator sizes, loss weights, schedule."""

    scale: int = 4
    num_feat: int = 64  # generator features (ESRGAN: 64)
    num_block: int = 23  # RRDB blocks (ESRGAN: 23)
    num_grow_ch: int = 32
    d_feat: int = 64  # discriminator base width
    pretrain_steps: int = 0  # L1-only generator steps before the adversarial phase
    l1_weight: float = 1e-2  # ESRGAN's eta
    adv_weight: float = 5e-3  # ESRGAN's lambda
    perceptual: str = "auto"  # auto (on when VGG19 weights are present) | on (required) | off
    perceptual_weight: float = 1.0
    lr: float = 1e-4  # generator and discriminator (ESRGAN: 1e-4)

    def __post_init__(self) -> None:
        if self.perceptual not in ("auto", "on", "off"):
            raise ValueError(f"gan option perceptual must be auto, on or off, got {self.perceptual!r}")
        if self.scale not in (1, 2, 4, 8):
            raise ValueError(f"the trainable GAN supports scales 1, 2, 4 and 8, got {self.scale}")

    def generator_config(self) -> RRDBNetConfig:
        """The RRDBNet config of the generator."""
        return RRDBNetConfig(self.scale, 3, 3, self.num_feat, self.num_block, self.num_grow_ch)


class Discriminator(nn.Module):
    """VGG-style discriminator: 5 stages of (3x3 conv, 4x4 stride-2 conv), LeakyReLU 0.2, pooled, 2 linears."""

    def __init__(self, d_feat: int = 64) -> None:
        super().__init__()
        chans = [3, d_feat, 2 * d_feat, 4 * d_feat, 8 * d_feat, 8 * d_feat]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, 1, 1), nn.LeakyReLU(0.2, True)]
            layers += [nn.Conv2d(c_out, c_out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Sequential(nn.Linear(chans[-1] * 16, 100), nn.LeakyReLU(0.2, True), nn.Linear(100, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0,1] -> (B,) raw scores C(x)."""
        return self.head(self.pool(self.features(x)).flatten(1)).squeeze(1)


class VGGFeatures(nn.Module):
    """VGG19 features up to conv5_4 before its ReLU (ESRGAN's perceptual layer), ImageNet-normalized input."""

    def __init__(self, weights_path: str) -> None:
        super().__init__()
        from torchvision.models import vgg19

        vgg = vgg19()
        vgg.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        self.features = vgg.features[:35].eval().requires_grad_(False)  # up to conv5_4, pre-activation
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0,1] -> conv5_4 features."""
        return self.features((x - self.mean) / self.std)


def ragan_d_loss(c_real: torch.Tensor, c_fake: torch.Tensor) -> torch.Tensor:
    """L_D of the relativistic average GAN (ESRGAN eq. 2), mean of its real and fake halves."""
    # D_Ra(x_r, x_f) should be 1 and D_Ra(x_f, x_r) should be 0.
    real = F.binary_cross_entropy_with_logits(c_real - c_fake.mean(), torch.ones_like(c_real))
    fake = F.binary_cross_entropy_with_logits(c_fake - c_real.mean(), torch.zeros_like(c_fake))
    return 0.5 * (real + fake)


def ragan_g_loss(c_real: torch.Tensor, c_fake: torch.Tensor) -> torch.Tensor:
    """L_G^Ra (ESRGAN eq. 3): the generator wants the relativistic judgments reversed."""
    real = F.binary_cross_entropy_with_logits(c_real - c_fake.mean(), torch.zeros_like(c_real))
    fake = F.binary_cross_entropy_with_logits(c_fake - c_real.mean(), torch.ones_like(c_fake))
    return 0.5 * (real + fake)


def perceptual_weights_path(mode: str, log=print) -> str | None:
    """The VGG19 weights file when the perceptual loss is on; None (with a clear note) when it is off."""
    from evalsuite.weights import MissingWeightsError, ensure_weight, weight_path

    if mode == "off":
        return None
    path = weight_path("vgg19-perceptual")
    if path.exists():
        return str(path)
    if mode == "on":
        try:
            return str(ensure_weight("vgg19-perceptual"))
        except MissingWeightsError as exc:
            raise MissingWeightsError(f"perceptual=on needs the VGG19 weights: {exc}") from exc
    log(
        f"note: perceptual loss OFF: VGG19 weights not found at {path} (no network download is attempted "
        "under perceptual=auto); the GAN trains with L1 + adversarial loss only. To use it, put "
        f"{path.name} there or run `evalsuite weights fetch vgg19-perceptual`, then --set perceptual=on"
    )
    return None


class GanRecipe:
    """Recipe: modules `generator` (exported, EMA) and `discriminator`; optimizers of the same names."""

    kind = "gan"
    export = "generator"

    def __init__(self, config: GanConfig, log=print) -> None:
        """Resolve the perceptual loss once (it needs VGG19 weights); that decides the logged metrics."""
        self.config = config
        self.vgg_path = perceptual_weights_path(config.perceptual, log)
        self._vgg: VGGFeatures | None = None
        perceptual = ("perceptual",) if self.vgg_path is not None else ()
        self.metrics = ("adversarial", "l1", "g_adv", *perceptual, "g_loss", "d_loss")

    def build_modules(self) -> dict[str, nn.Module]:
        """Fresh generator and discriminator."""
        cfg = self.config
        return {"generator": RRDBNet(cfg.generator_config()), "discriminator": Discriminator(cfg.d_feat)}

    def build_optimizers(self, modules: dict[str, nn.Module], lr: float | None) -> dict[str, torch.optim.Optimizer]:
        """Adam for each network (ESRGAN: lr 1e-4, betas (0.9, 0.99))."""
        lr = self.config.lr if lr is None else lr
        return {k: torch.optim.Adam(m.parameters(), lr=lr, betas=(0.9, 0.99)) for k, m in modules.items()}

    def _perceptual(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self._vgg is None:
            self._vgg = VGGFeatures(self.vgg_path).to(sr.device)
        return F.l1_loss(self._vgg(sr), self._vgg(hr).detach())

    def train_step(self, models: dict[str, nn.Module], batch: Batch, step: int) -> StepOutput:
        """L1 only while pre-training; then the generator loss (D frozen) and the discriminator loss (fakes fixed)."""
        from baselines.train import StepOutput, frozen

        cfg = self.config
        g, d = models["generator"], models["discriminator"]
        x_lr, x_r = batch.lr, batch.hr
        x_f = g(x_lr)
        l1 = F.l1_loss(x_f.float(), x_r)
        # Pre-training: the PSNR-oriented generator (L1 only); the adversarial columns are logged as 0.
        if step < cfg.pretrain_steps:
            zero = torch.zeros((), device=x_r.device)
            metrics = dict.fromkeys(self.metrics, zero) | {"l1": l1, "g_loss": l1}
            return StepOutput(losses={"generator": l1}, metrics=metrics)
        # Generator loss: content + relativistic adversarial (+ perceptual). D judges through frozen weights,
        # so this loss reaches G only; the real scores are constants.
        c = frozen(d)(torch.cat([x_r, x_f])).float()
        c_real, c_fake = c[: len(x_r)].detach(), c[len(x_r) :]
        l_adv = ragan_g_loss(c_real, c_fake)
        l_g = cfg.l1_weight * l1 + cfg.adv_weight * l_adv
        metrics = {"adversarial": torch.ones((), device=x_r.device), "l1": l1, "g_adv": l_adv}
        if self.vgg_path is not None:
            l_p = self._perceptual(x_f.float(), x_r)
            l_g = l_g + cfg.perceptual_weight * l_p
            metrics["perceptual"] = l_p
        # Discriminator loss on real crops and detached fakes: it reaches D only.
        c = d(torch.cat([x_r, x_f.detach()])).float()
        l_d = ragan_d_loss(c[: len(x_r)], c[len(x_r) :])
        metrics.update(g_loss=l_g, d_loss=l_d)
        return StepOutput(losses={"generator": l_g, "discriminator": l_d}, metrics=metrics)

    def checkpoint_extra(self) -> dict[str, Any]:
        """Whether the perceptual loss was used (`gan:CKPT` rebuilds the generator from the checkpoint's config)."""
        return {"perceptual_used": self.vgg_path is not None}


# `--preset NAME`: sizes of generator and discriminator; `--set` options override them.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"num_feat": 16, "num_block": 2, "num_grow_ch": 8, "d_feat": 16},  # tests, CPU smoke runs
    "small": {"num_feat": 32, "num_block": 6, "num_grow_ch": 16, "d_feat": 32},
    "esrgan": {},  # ESRGAN's generator: 64 features, 23 RRDBs (16.7M parameters at x4)
}


def make_recipe(cfg: Any, options: dict[str, Any]) -> GanRecipe:
    """Build the GAN recipe from the run's TrainConfig (scale, crop), `--preset` and `--set KEY=VALUE` options."""
    options = dict(options)
    preset = options.pop("preset", None) or "esrgan"
    if preset not in PRESETS:
        raise ValueError(f"unknown gan preset {preset!r}; known: {', '.join(PRESETS)}")
    if "scale" in options:
        raise ValueError("set the GAN's scale with --task/--scale, not --set scale=")
    config = replace(config_from_options(GanConfig, {**PRESETS[preset], **options}, "gan"), scale=cfg.scale)
    if cfg.crop < 32 or cfg.crop % cfg.scale:
        raise ValueError(f"GAN training needs a crop of at least 32 px that is a multiple of the scale, got {cfg.crop}")
    return GanRecipe(config)


def generator_from_checkpoint(ckpt: Any) -> RRDBNet:
    """The RRDBNet generator of a `gan` checkpoint (`baselines.checkpoint.Checkpoint`)."""
    gen_cfg = GanConfig(**ckpt.config).generator_config()
    model = RRDBNet(gen_cfg)
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{ckpt.path}: generator weights do not match the config {gen_cfg}: {exc}") from exc
    return model.eval()
