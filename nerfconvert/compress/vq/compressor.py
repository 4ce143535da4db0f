"""The VQRF steps on one model: importance over the training rays (Eq. 3-4), pruning and keeping
by cumulative-mass quantiles (Eq. 5-6, 10), importance-weighted codebooks (Eq. 8-9), and the
constraints of the joint fine-tuning (fixed assignment, code synchronisation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Literal, Optional

import torch
from torch import Tensor

from nerfstudio.utils.rich_utils import CONSOLE

from nerfconvert.compress.vq.codebook import cumulative_mass_masks, fit_codebook, weighted_code_means
from nerfconvert.compress.vq.codec import TableState, lattice_codes, lattice_values
from nerfconvert.compress.tables import CompressionTables


@dataclass
class VQSettings:
    """The VQRF settings (the model config inherits them, so each default and its help live here)."""

    quantizer: Optional[Literal["codebook", "lattice"]] = None
    """How vector-quantised tables are stored: "codebook" (VQRF: K codes, ceil(log2 K)-bit indices, 8-bit
    kept voxels) or "lattice" (every live voxel rounded to a multiple of ``lattice_step``, the kept ones to a
    finer step, the integers entropy-coded). Default per family: lattice for tensorf planes and hash
    grids, codebook for the voxel grid."""
    prune_quantile: float = 0.001
    """beta_p (Eq. 6): share of the total importance whose least important voxels are pruned."""
    keep_quantile: Optional[float] = None
    """beta_k (Eq. 10): share of the importance carried by voxels kept out of the codebook (8-bit instead;
    a finer lattice step for hash grids). Default per family: 0.6 voxel grid, 0.7 VM, 0.3 hash grid."""
    lattice_step: float = 0.7
    """Lattice tables: lattice step of the vector-quantised entries, as a multiple of the RMS of the table's live
    entries (larger: smaller file, lower quality)."""
    lattice_kept_step: float = 0.25
    """Lattice tables: lattice step of the kept (most important) entries, as a fraction of the step above."""
    codebook_size: int = 4096
    """K: codes per codebook (indices take ceil(log2 K) bits)."""
    kmeans_iterations: int = 100
    """Mini-batch iterations of the weighted codebook fit (Eq. 8-9)."""
    kmeans_batch_size: int = 10000
    """Voxels per codebook iteration."""
    ema_decay: float = 0.8
    """lambda_d of the code EMA (Eq. 9)."""
    num_expire: int = 10
    """Codes of lowest capacity re-seeded per codebook iteration."""
    seed: int = 0


@torch.no_grad()
def build_states(family: CompressionTables, importance: Dict[str, Tensor], settings: VQSettings) -> Dict[str, TableState]:
    """Prune, choose the kept voxels, fit the codebooks, and write the quantised values into the
    model (so fine-tuning starts from the vector-quantised model)."""
    keep_q = settings.keep_quantile if settings.keep_quantile is not None else family.default_keep_quantile
    params = dict(family.model.named_parameters())
    live = family.live_mask() if hasattr(family, "live_mask") else None
    states: Dict[str, TableState] = {}
    generator = torch.Generator().manual_seed(settings.seed)
    for table in family.tables():
        rows = table.rows(params[table.param_name].data)
        n = rows.shape[0]
        imp = importance.get(table.importance_key)
        imp = torch.zeros(n) if imp is None else imp.detach().float().cpu()
        if live is not None:
            imp = imp * live.cpu().float()
        alive, kept = cumulative_mass_masks(imp, settings.prune_quantile, keep_q)
        fill = None
        if table.fill == "mean":  # the pruned rows' per-channel mean (zeros when nothing is pruned)
            dead = rows.detach()[~alive.to(rows.device)].float()
            fill = dead.mean(dim=0).cpu() if dead.shape[0] else torch.zeros(rows.shape[1])
        assignment = torch.full((n,), -1, dtype=torch.long)
        codebook = None
        steps = latent = None
        if table.kind == "lattice":
            live_rows = rows.detach()[alive.to(rows.device)]
            rms = float(live_rows.float().pow(2).mean().sqrt()) if live_rows.numel() else 1.0
            coarse = float(torch.tensor(max(settings.lattice_step * rms, 1e-12), dtype=torch.float32))
            fine = float(torch.tensor(coarse * settings.lattice_kept_step, dtype=torch.float32))
            steps = (coarse, fine)
            latent = rows.detach().float().clone()
        elif table.kind == "vq":
            vq = alive & ~kept
            features = rows.detach().cpu().float()[vq]
            fit = fit_codebook(features, imp[vq], settings.codebook_size, settings.kmeans_iterations,
                               settings.kmeans_batch_size, settings.ema_decay, settings.num_expire, generator)
            codebook = fit.codebook
            assignment[vq] = fit.assignment
        states[table.name] = TableState(alive=alive, kept=kept, assignment=assignment, codebook=codebook, importance=imp,
                                        steps=steps, latent=latent, fill=fill)
        CONSOLE.print(
            f"[bold]vq[/bold] {table.name}: {n:,} voxels, pruned {int((~alive).sum()):,}, kept {int(kept.sum()):,}, "
            f"vector-quantised {int((alive & ~kept).sum()) if table.kind != 'scalar' else 0:,}"
            + (f" with {codebook.shape[0]} codes" if codebook is not None else "")
            + (f" on a lattice of step {steps[0]:.4g} (kept: {steps[1]:.4g})" if steps is not None else "")
        )
    move_states(states, rows.device)
    for table in family.tables():  # lattice tables start on their lattice (apply_states then sees no update)
        state = states[table.name]
        if state.latent is not None:
            rows = table.rows(params[table.param_name].data)
            rows.copy_(_lattice_projection(state.latent, state, state.empty(table, rows)))
    apply_states(family, states)
    family.apply_alive({name: s.alive for name, s in states.items()})
    return states


def move_states(states: Dict[str, TableState], device) -> None:
    for s in states.values():
        s.alive, s.kept, s.assignment, s.importance = (t.to(device) for t in (s.alive, s.kept, s.assignment, s.importance))
        if s.latent is not None:
            s.latent = s.latent.to(device)
        if s.codebook is not None:
            s.codebook = s.codebook.to(device)


@torch.no_grad()
def apply_states(family: CompressionTables, states: Dict[str, TableState], sync_codes: bool = False) -> None:
    """Enforce the compressed structure on the model: pruned voxels empty, and every
    vector-quantised voxel equal to its code. With ``sync_codes`` each code first becomes the
    importance-weighted mean of its voxels (the code update of the joint fine-tuning)."""
    params = dict(family.model.named_parameters())
    for table in family.tables():
        state = states[table.name]
        rows = table.rows(params[table.param_name].data)
        if state.latent is not None:
            # a pass over a whole hash table costs about as much as a training step on CPU: lattice
            # rows are projected when codes are synchronised (every sync_every steps, and before packing)
            if sync_codes:
                _project_lattice(rows, state, state.empty(table, rows))
            continue
        rows[~state.alive] = state.empty(table, rows)
        if state.codebook is None:
            continue
        vq = state.vq
        assignment = state.assignment[vq]
        if sync_codes and assignment.numel():
            state.codebook = weighted_code_means(rows[vq], state.importance[vq], assignment, state.codebook)
        rows[vq] = state.codebook[assignment].to(rows.dtype)


def _lattice_projection(latent: Tensor, state: TableState, empty: Tensor) -> Tensor:
    """Every row on its lattice (the kept rows on the finer one), pruned rows empty: one pass over the
    table, bit-identical to the decoder's ``codes * step`` (float32 division, rounding, product)."""
    coarse, fine = (torch.tensor(s, dtype=torch.float32, device=latent.device) for s in state.steps)
    step = torch.where(state.kept, fine, coarse)[:, None]
    out = torch.div(latent, step).round_().mul_(step)
    return torch.where(state.alive[:, None], out, empty.to(out.dtype))


@torch.no_grad()
def _project_lattice(rows: Tensor, state: TableState, empty: Tensor) -> None:
    """Quantisation-aware fine-tuning of a lattice table: the optimizer's change to the projected
    rows since the last call moves the full-precision latent, and the rows become the latent's
    projection again (updates smaller than a step accumulate instead of being rounded away)."""
    previous = _lattice_projection(state.latent, state, empty)  # what the rows held after the last call
    state.latent.add_(rows).sub_(previous)
    state.latent.copy_(torch.where(state.alive[:, None], state.latent, empty.to(state.latent.dtype)))
    rows.copy_(_lattice_projection(state.latent, state, empty))
