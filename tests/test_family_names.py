"""Per-family knowledge lives in ``nerfconvert/views/`` (and the methods' own packages): no other module
names a family, a model class, or reaches into a family's fields (the house issue's grep, in Python)."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nerfconvert"
EXEMPT = ("views", "plenoxels", "splat", "distillnerf")
FAMILY_KNOWLEDGE = re.compile(
    r'(==|!=|in \(|in \[)\s*"(nerfacto|tensorf|vanilla-nerf|plenoxels|splatfacto|tensorf-unbounded)"'
    r"|isinstance\([^)]*(TensoRF|Nerfacto|Splatfacto|VanillaModel|Plenoxels)"
    r"|\.(mlp_base|plane_coef|density_grid|sh_grid|gauss_params|proposal_networks|field_coarse)\b"
    r'|"(TensoRFModel|NerfactoModel|SplatfactoModel)"'
)


def offending_lines(root: Path = PACKAGE):
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in EXEMPT:
            continue
        for number, line in enumerate(path.read_text("utf8").splitlines(), 1):
            if FAMILY_KNOWLEDGE.search(line):
                yield f"nerfconvert/{rel}:{number}: {line.strip()}"


def test_no_module_outside_the_views_names_a_family(tmp_path):
    assert list(offending_lines()) == []
    # the check can fail: a module that compares a student's name is caught
    (tmp_path / "convert.py").write_text('if student == "tensorf":\n    pass\n')
    assert len(list(offending_lines(tmp_path))) == 1
