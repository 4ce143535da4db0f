"""pvd-al: Progressive Volume Distillation with Active Learning (any architecture -> any other).

Layout: ``cameras`` (pseudo-camera distribution), ``datamanager`` (pseudo-camera rays, hard
poses), ``losses`` (Eq. 6-8, L_reg, hard points), ``active`` (hard-pose and hard-ray pools),
``pipeline`` (teacher, student, stages), ``trainer`` (flags, student export), ``export``.
"""
