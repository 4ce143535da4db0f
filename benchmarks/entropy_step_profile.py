"""Where an entropy-compression training step goes, outside the trainer: the masked entropy
model's forward (CompressAI's EntropyBottleneck), the plane decoder's forward, and the backward
of both, for each preset at a given plane resolution, on one CPU thread. Each preset runs twice:
with the exact rate (every latent location, ``rate_sample_fraction`` 1.0: the step before the
option) and with the rate estimated on ``--rate-sample-fraction`` of the locations (the default
config's step), both with the config's quantisation-aware ``decoder_bits``.

    python benchmarks/entropy_step_profile.py --resolutions 128 213 256

Prints the table and writes it to benchmarks/results/<tag>.{md,json}.
"""

import time

import torch

from common import benchmark_parser, command_line, markdown_table, write_report

from nerfconvert.compress.entropy.coder import PRESETS, MaskedEntropyModel, PlaneDecoder, latent_size
from nerfconvert.compress.entropy.model import EntropyCompressionModelConfig


def main(argv=None) -> None:
    defaults = EntropyCompressionModelConfig()
    parser = benchmark_parser(__file__, __doc__, tag="entropy_step_profile", work_dir=False)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--plane-channels", type=int, default=64, help="tensorf: 16 density + 48 appearance")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps; the last is reported (the first warms up)")
    parser.add_argument("--rate-sample-fraction", type=float, default=defaults.rate_sample_fraction,
                        help="the subset-rate rows' fraction of latent locations (default: the config's)")
    parser.add_argument("--decoder-bits", type=int, default=defaults.decoder_bits, help="default: the config's")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for resolution in args.resolutions:
        side = latent_size(resolution)
        for preset, (latent_channels, hidden) in PRESETS.items():
            for fraction in dict.fromkeys((1.0, args.rate_sample_fraction)):
                torch.manual_seed(0)
                decoder = PlaneDecoder(latent_channels, hidden, args.plane_channels, bits=args.decoder_bits)
                entropy = MaskedEntropyModel(latent_channels, (3, side, side))
                z = torch.zeros(3, latent_channels, side, side, requires_grad=True)
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    z_hat, bits = entropy(z, 1.0, fraction)
                    t1 = time.perf_counter()
                    planes = decoder(z_hat, (resolution, resolution))
                    t2 = time.perf_counter()
                    (planes.pow(2).mean() + bits / 1e6).backward()
                    t3 = time.perf_counter()
                rows.append({"preset": preset, "resolution": resolution, "latent_channels": latent_channels, "latent_side": side,
                             "rate_fraction": fraction, "entropy_s": t1 - t0, "decoder_s": t2 - t1, "backward_s": t3 - t2,
                             "total_s": t3 - t0})
                print(rows[-1], flush=True)
    table = markdown_table(
        ["preset", "plane", "latents", "rate fraction", "entropy fwd (s)", "decoder fwd (s)", "backward (s)", "total (s)"],
        [[r["preset"], f"{r['resolution']}²", f"3 x {r['latent_channels']} x {r['latent_side']}²", f"{r['rate_fraction']:g}",
          f"{r['entropy_s']:.2f}", f"{r['decoder_s']:.2f}", f"{r['backward_s']:.2f}", f"{r['total_s']:.2f}"] for r in rows],
        right=[False, True, True, True, True, True, True, True])
    command = command_line(argv, __file__)
    print(write_report(args.results_dir, args.tag, "\n".join([
        "# Where an entropy-compression step goes", "", f"Command: `{command}`", "",
        f"Decoder {args.decoder_bits}-bit; one CPU thread; the last of {args.repeats} steps.", "", table]),
        {"command": command, "decoder_bits": args.decoder_bits, "repeats": args.repeats, "rows": rows}))


if __name__ == "__main__":
    main()
