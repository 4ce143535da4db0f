"""How far the container's general-purpose coders are from a memoryless coder on a vq-compression
file's lattice codes: for each integer code section (``t/<table>/codes`` and ``kept_codes``), the
zeroth-order entropy of its symbols per channel (what a static-model range or rANS coder with one
frequency table per channel would need, tables not counted) against the bytes the file stores.

    python benchmarks/ncz_code_entropy.py <run>/scene.ncz [more.ncz ...]

Prints a table per file; nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List

import numpy as np


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.files:
        rows = code_sections(path)
        print(f"\n{path} ({path.stat().st_size / 1e3:.0f} kB)\n")
        print("| section | symbols | codec | stored kB | per-channel entropy kB |")
        print("|---|---:|---|---:|---:|")
        for r in rows:
            print(f"| {r['section']} | {r['symbols']} | {r['codec']} | {r['stored'] / 1e3:.1f} | {r['entropy'] / 1e3:.1f} |")
        stored, entropy = sum(r["stored"] for r in rows), sum(r["entropy"] for r in rows)
        print(f"| **all code sections** | {sum(r['symbols'] for r in rows)} | | **{stored / 1e3:.0f}** | **{entropy / 1e3:.0f}** |")


if __name__ == "__main__":
    main()
