"""DistillNeRF: a generalizable sparse-voxel model of driving scenes, trained with depth distilled
from per-scene NeRFs.

    data.py            multi-scene data: dataparser ``distillnerf-data`` and the data manager
    nuscenes.py        nuScenes scenes through nuscenes-devkit, in the same records
    teachers.py        per-scene teacher NeRFs and their dense-depth cache (``nerfconvert distillnerf-teachers``)

Imports are kept out of this file so that each part loads only what it needs.
"""
