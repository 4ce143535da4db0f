"""``ns-train tensorf-unbounded nerfstudio-data --data <capture>``: stock TensoRF with nerfacto's
scene contraction and sampling, for captures with a background (see ``nerfconvert/unbounded.py``).

Everything but the model is nerfstudio's own ``tensorf`` method: data manager, optimizers and
their schedules (which follow ``--max-num-iterations``, as every nerfconvert method's do).
"""

from __future__ import annotations

import copy
import dataclasses

from nerfstudio.configs.method_configs import method_configs
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfconvert.schedules import RunLengthTrainerConfig
from nerfconvert.unbounded import UnboundedTensoRFModelConfig


def _config() -> RunLengthTrainerConfig:
    stock = copy.deepcopy(method_configs["tensorf"])
    values = {f.name: getattr(stock, f.name) for f in dataclasses.fields(stock) if f.init}
    config = RunLengthTrainerConfig(**values)
    config.method_name = "tensorf-unbounded"
    model = stock.pipeline.model
    config.pipeline.model = UnboundedTensoRFModelConfig(
        **{f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.init and f.name not in ("_target", "background_color")}
    )
    config.pipeline.datamanager.dataparser = NerfstudioDataParserConfig()
    return config


tensorf_unbounded = MethodSpecification(
    config=_config(),
    description="TensoRF over nerfacto's contracted space: VM planes that reach the background of a capture.",
)
