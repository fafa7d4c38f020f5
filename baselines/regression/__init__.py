"""The paper's regression baseline: SR3's U-Net trained with MSE, one forward pass (`regression:CKPT`).

`method.py`: the network, its config and the harness method; `recipe.py`: the training recipe for the one loop
(kept apart so that evaluation never imports the training loop).
"""

from baselines.regression.method import (
    RegressionConfig,
    RegressionMethod,
    RegressionNet,
    build_regression,
    load_regression,
)

__all__ = ["RegressionConfig", "RegressionMethod", "RegressionNet", "build_regression", "load_regression"]
