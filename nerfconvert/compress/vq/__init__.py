"""VQRF (Li et al., "Compressing Volumetric Radiance Fields to 1 MB", CVPR 2023) as the
``vq-compression`` nerfstudio method: ``families`` (what is quantised per architecture),
``codebook`` (Eq. 5-10), ``compressor`` (importance, pruning, fine-tuning constraints),
``codec`` (model <-> .ncz), ``model`` and ``pipeline`` (the method)."""
