"""Fuzz the ``.ncz`` reader: N structure-aware mutations of one file, each resealed with a valid
CRC and SHA-256 and decoded in a worker process (``container.from_bytes`` + the method's ``decode``).

    python benchmarks/fuzz_ncz.py --kind vq --cases 10000          # a tiny plenoxels vq file, built in-process
    python benchmarks/fuzz_ncz.py --kind entropy --cases 10000     # a tiny tensorf entropy file
    python benchmarks/fuzz_ncz.py --file outputs/.../scene.ncz     # any file

Every outcome must be ``decoded`` or ``refused`` (the one-line ``NerfconvertError``); the worker's
peak RSS growth over its first, clean decode must stay under ``--memory-bound-mb``. Writes
``benchmarks/results/fuzz_ncz[_<tag>].{md,json}`` and exits 1 on any finding.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path

from common import benchmark_parser, command_line, hardware, load_average, shown, write_report


def main(argv=None) -> int:
    parser = benchmark_parser(__file__, __doc__, work_dir=False)
    parser.add_argument("--kind", choices=("vq", "entropy"), default="vq", help="tiny file to build (without --file)")
    parser.add_argument("--file", type=Path, default=None, help="fuzz this .ncz instead")
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-bound-mb", type=float, default=512.0)
    parser.add_argument("--bomb-mb", type=int, default=1536, help="inflated size of the planted decompression bombs")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--tag", default=None, help="results name suffix (default: the kind)")
    args = parser.parse_args(argv)

    from nerfconvert.compress import fuzz

    if args.file is not None:
        original = args.file.read_bytes()
        source = shown(args.file)
    else:
        original = (fuzz.tiny_vq_file if args.kind == "vq" else fuzz.tiny_entropy_file)()
        source = f"tiny {args.kind} file built by nerfconvert.compress.fuzz.tiny_{args.kind}_file()"
    tag = args.tag or (args.kind if args.file is None else args.file.stem)
    started = datetime.datetime.now()
    print(f"fuzzing {source} ({len(original):,} bytes), {args.cases} cases, seed {args.seed}, bombs {args.bomb_mb} MB", flush=True)
    last = [time.perf_counter()]

    def progress(done, counts):
        if done % 500 == 0 or done == args.cases:
            rate = done / max(time.perf_counter() - start, 1e-9)
            print(f"{done:>6}/{args.cases}  " + "  ".join(f"{k} {v}" for k, v in counts.items() if v) + f"  ({rate:.1f}/s)", flush=True)

    start = time.perf_counter()
    result = fuzz.run(original, args.cases, seed=args.seed, memory_bound_mb=args.memory_bound_mb,
                      bomb_size=args.bomb_mb << 20, timeout=args.timeout, progress=progress)
    findings = sum(result.counts[k] for k in fuzz.FINDINGS)
    command = command_line(argv, __file__)
    record = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(result.seconds, 1),
        "hardware": hardware(),
        "load_average_end": list(os.getloadavg()),
        "file": source,
        "file_bytes": len(original),
        "cases": result.cases,
        "seed": args.seed,
        "bomb_bytes": args.bomb_mb << 20,
        "memory_bound_mb": args.memory_bound_mb,
        "counts": result.counts,
        "findings": findings,
        "peak_growth_mb": round(result.peak_growth_mb, 1),
        "by_operator": result.by_operator,
        "finding_cases": result.findings[:200],
    }
    lines = [
        f"# fuzz_ncz ({tag})", "",
        f"`{record['command']}`  ",
        f"{record['started']}, {record['seconds']} s, load average at the end {load_average()}.  ",
        f"File: {source}, {len(original):,} bytes. Bombs: {args.bomb_mb} MB of zeros coded by zlib / lzma.", "",
        "| outcome | cases |", "|---|---:|",
        *[f"| {k} | {v} |" for k, v in result.counts.items()],
        f"| **findings** (anything but decoded / refused) | **{findings}** |", "",
        f"Peak RSS growth of the decoding worker over its clean first decode: **{result.peak_growth_mb:.1f} MB** "
        f"(bound {args.memory_bound_mb:.0f} MB).", "",
        "| mutation | " + " | ".join(fuzz.OUTCOMES[:3]) + " | findings |", "|---|" + "---:|" * 4,
        *[f"| {op} | " + " | ".join(str(c.get(k, 0)) for k in fuzz.OUTCOMES[:3]) + f" | {sum(c.get(k, 0) for k in fuzz.FINDINGS)} |"
          for op, c in sorted(result.by_operator.items())],
    ]
    print(write_report(args.results_dir, f"fuzz_ncz_{tag}", "\n".join(lines), record))
    for f in result.findings[:20]:
        print(f)
    return 1 if findings or result.peak_growth_mb > args.memory_bound_mb else 0


if __name__ == "__main__":
    sys.exit(main())
