"""How far the container's general-purpose coders are from a memoryless coder on a vq-compression
file's lattice codes: for each integer code section (``t/<table>/codes`` and ``kept_codes``), the
zeroth-order entropy of its symbols per channel (what a static-model range or rANS coder with one
frequency table per channel would need, tables not counted) against the bytes the file stores.

    python benchmarks/ncz_code_entropy.py <run>/scene.ncz [more.ncz ...]

Prints a table per file and writes them to benchmarks/results/<tag>.{md,json}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

from common import benchmark_parser, command_line, markdown_table, shown, write_report


def channel_entropy_bytes(codes: np.ndarray) -> float:
    """Bytes a memoryless coder with one frequency table per row (channel) needs for ``codes`` [C, N]."""
    total_bits = 0.0
    for row in codes.reshape(codes.shape[0], -1):
        _, counts = np.unique(row, return_counts=True)
        p = counts / counts.sum()
        total_bits += float(-(counts * np.log2(p)).sum())
    return total_bits / 8


def code_sections(path: Path) -> List[Dict]:
    from nerfconvert.compress.container import read_ncz

    ncz = read_ncz(path)
    rows = []
    for name, section in sorted(ncz.sections.items()):
        if not (name.startswith("t/") and name.rsplit("/", 1)[-1] in ("codes", "kept_codes")):
            continue
        codes = section.array()
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            continue
        rows.append({"section": name, "symbols": int(codes.size), "codec": section.codec,
                     "stored": section.stored_bytes, "entropy": channel_entropy_bytes(codes)})
    return rows


def main(argv=None) -> None:
    parser = benchmark_parser(__file__, __doc__, tag="ncz_code_entropy", work_dir=False)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    command = command_line(argv, __file__)
    lines, files = ["# Code sections against a memoryless coder", "", f"Command: `{command}`"], {}
    for path in args.files:
        rows = code_sections(path)
        stored, entropy = sum(r["stored"] for r in rows), sum(r["entropy"] for r in rows)
        files[shown(path)] = {"bytes": path.stat().st_size, "sections": rows}
        lines += ["", f"`{shown(path)}` ({path.stat().st_size / 1e3:.0f} kB)", "", markdown_table(
            ["section", "symbols", "codec", "stored kB", "per-channel entropy kB"],
            [[r["section"], r["symbols"], r["codec"], f"{r['stored'] / 1e3:.1f}", f"{r['entropy'] / 1e3:.1f}"] for r in rows]
            + [["**all code sections**", sum(r["symbols"] for r in rows), "", f"**{stored / 1e3:.0f}**", f"**{entropy / 1e3:.0f}**"]],
            right=[False, True, False, True, True])]
    print(write_report(args.results_dir, args.tag, "\n".join(lines), {"command": command, "files": files}))


if __name__ == "__main__":
    main()
