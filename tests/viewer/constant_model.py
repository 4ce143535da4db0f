"""Test double: a plenoxels model whose rgb output is one constant colour (a broken render).
ns-viewer imports it from the run's config.yml, so this directory goes on its PYTHONPATH."""

import torch

from nerfconvert.plenoxels.model import PlenoxelsModel


class ConstantRGBPlenoxelsModel(PlenoxelsModel):
    def get_outputs(self, ray_bundle):
        outputs = super().get_outputs(ray_bundle)
        outputs["rgb"] = torch.full_like(outputs["rgb"], 0.5)
        return outputs
