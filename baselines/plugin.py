"""The baselines' plugin: registers the project's own methods, weights and recipes with the engine.

Named by this distribution's entry points in pyproject.toml (`evalsuite.methods`, `evalsuite.weights`), the
same way a third-party package adds its own. Only names are registered here: each method's module is imported
when the method is built, so listing methods stays cheap.
"""

from __future__ import annotations

from evalsuite.methods import register

_SR3 = "baselines.options:SR3MethodOptions"
_REG = "baselines.options:RegressionMethodOptions"
_GAN = "baselines.options:GANMethodOptions"
_CKPT_SCALES = "baselines.checkpoint:checkpoint_scales"  # the scale in a checkpoint's config


def register_methods() -> None:
    """Register the interpolations, external checkpoints, SR3/regression, the GANs and the shipped demo models."""
    for interp in ("nearest", "bilinear", "bicubic", "lanczos"):
        register(interp, "baselines.interpolate:build", f"{interp} interpolation")
    register("folder", "baselines.external:build_folder", "precomputed outputs in DIR/<image_id>.png", True)
    register(
        "spandrel", "baselines.gan.method:build_spandrel_method", "any checkpoint spandrel can load", True, options=_GAN
    )
    register(
        "sr3", "baselines.sr3.method:build_sr3", "SR3 checkpoint trained by `evalsuite train sr3`", True, options=_SR3,
        scales=_CKPT_SCALES,
    )
    register(
        "regression",
        "baselines.regression.method:build_regression",
        "regression U-Net from `evalsuite train regression`",
        True,
        options=_REG,
        scales=_CKPT_SCALES,
    )
    register("gan", "baselines.gan.method:build_gan", "GAN checkpoint from `evalsuite train gan`", True, options=_GAN,
             scales=_CKPT_SCALES)
    register(
        "diffusers",
        "baselines.diffusers_sr:build_diffusers",
        "diffusers SR pipeline folder or Hub id (StableDiffusionUpscalePipeline, LDMSuperResolutionPipeline)",
        True,
        options="baselines.options:DiffusersMethodOptions",
        scales="baselines.diffusers_sr:pipeline_scales",
    )
    register(
        "realesrgan-x4plus",
        "baselines.gan.method:build_realesrgan",
        "Real-ESRGAN x4plus (RRDBNet)",
        available="baselines.gan.method:realesrgan_available",
        options=_GAN,
        scales=(4,),
    )
    for s in (2, 3, 4, 8):
        register(
            f"esrgan-thick-x{s}",
            "baselines.gan.method:build_esrgan_thick",
            f"ESRGAN-thick x{s} (converted from @upscalerjs/esrgan-thick)",
            available="baselines.gan.method:esrgan_thick_available",
            options=_GAN,
            scales=(s,),
        )
    register(
        "sr3-demo",
        "baselines.demo:build_sr3_demo",
        "SR3 trained by this project (tiny, 4x, shipped; baselines/demo/MODEL_CARD.md)",
        available="baselines.demo:sr3_demo_available",
        options=_SR3,
        scales=(4,),
    )
    register(
        "regression-demo",
        "baselines.demo:build_regression_demo",
        "the regression baseline trained by this project (tiny, 4x, shipped; baselines/demo/MODEL_CARD.md)",
        available="baselines.demo:regression_demo_available",
        options=_REG,
        scales=(4,),
    )


def register_weights() -> None:
    """Register the GAN baselines' weights files (Real-ESRGAN, ESRGAN-thick, the GAN recipe's VGG19)."""
    import baselines.gan.weights  # noqa: F401  (declares them on import)
