"""What the plane-reconstruction start of entropy-compression gives before any rendering step: the
latents, an int8 H decoder and the masked entropy model fitted to a tensorf teacher's planes alone
(weighted plane term + 1e-3 x rate: the method's own ``fit_planes``, what ``plane_fit_iterations`` runs), then the decoded planes put
into the teacher and its renders compared with the teacher's own on a few test views. Run once with
the paper's weights (Eq. 5) and masks started from the importance, once with the default floor and
every location coded: the settings behind ``importance_floor`` and ``mask_from_importance``.

    python benchmarks/entropy_plane_fit.py --iterations 300 --floor 0.0 --mask-from-importance --tag entropy_plane_fit_paper
    python benchmarks/entropy_plane_fit.py --iterations 300 --floor 0.2

The teacher (``--teacher``) defaults to the newest lego100 tensorf run under ../shared/teachers.
Writes benchmarks/results/<tag>.{md,json}.
"""

from __future__ import annotations

from pathlib import Path

from common import benchmark_parser, command_line, now_utc, psnr, shown, teacher_config, write_report


def main(argv=None) -> int:
    parser = benchmark_parser(__file__, __doc__, tag="entropy_plane_fit", work_dir=False)
    parser.add_argument("--teacher", type=Path, default=None, help="a tensorf run's config.yml (default: the newest lego100 one)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--floor", type=float, default=0.2, help="least plane weight (0: the paper's Eq. 5)")
    parser.add_argument("--mask-from-importance", action="store_true", help="latents of zero-importance blocks start uncoded")
    parser.add_argument("--every", type=int, default=50, help="score every n-th test view")
    args = parser.parse_args(argv)
    args.teacher = args.teacher or teacher_config("tensorf")

    import torch

    from nerfconvert.compress.entropy.model import EntropyCompressionModelConfig
    from nerfconvert.compress.tables import accumulate_importance, vq_tables_for
    from nerfconvert.compress.teacher import training_ray_bundles
    from nerfconvert.views.registry import load_pipeline

    started = now_utc()
    pipeline = load_pipeline(args.teacher, device="cpu", test_mode="test")
    teacher = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    views = list(range(0, len(dataset), args.every))

    def render(model):
        model.eval()
        with torch.no_grad():
            return [model.get_outputs_for_camera(dataset.cameras[i : i + 1])["rgb"] for i in views]

    base = render(teacher)
    importance = accumulate_importance(vq_tables_for(teacher), training_ray_bundles(pipeline.datamanager, "cpu", 4096, 65536, 0))
    # the method's own model and plane fit (EntropyCompressionModel.fit_planes), ECTensoRF-H
    model = EntropyCompressionModelConfig(preset="high", importance_floor=args.floor,
                                          mask_from_importance=args.mask_from_importance).setup(
        scene_box=dataset.scene_box, num_train_data=len(pipeline.datamanager.train_dataset), metadata={})
    model.start_from_teacher(teacher, 0, importance, {})
    model.fit_planes(args.iterations)
    seconds = model.report["plane_fit_seconds"]
    score = sum(psnr(a, b) for a, b in zip(render(model), base)) / len(views)
    command = command_line(argv, __file__)
    markdown = "\n".join([
        "# entropy-compression's plane fit alone", "", f"Command: `{command}`", "", f"{started} - {now_utc()}.", "",
        f"Teacher `{shown(args.teacher)}`: {args.iterations} plane-fit iterations ({seconds:.0f} s), floor {args.floor:g}, "
        f"masks from importance {args.mask_from_importance}: **{score:.2f} dB** against the teacher's renders on {len(views)} test views."])
    print(write_report(args.results_dir, args.tag, markdown, {
        "command": command, "teacher": str(args.teacher), "iterations": args.iterations, "floor": args.floor,
        "mask_from_importance": args.mask_from_importance, "plane_fit_seconds": seconds, "psnr_vs_teacher": score,
        "views": views}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
