"""Creative workflows without an optimization: styleblocks, mix grids, interpolation, rendering, blending.

Each is one public function whose keyword names are the CLI options of the command of the same name
(``clipstyle styleblocks --seed 3 --blocks coarse`` is ``styleblocks(seed=3, blocks="coarse")``;
``--class`` is ``class_idx``) and returns a :class:`~clipstyle.pipelines.run.Run` whose ``save(outdir)``
writes the run folder the CLI writes (``blend`` returns the blended generator). Latent sources are seeds
(``42``, ``42@0.7``, ``0-3``) or latent ``.npz`` files (``face.npz``, ``face.npz#1``); see
:mod:`clipstyle.latents.constraints`. Pass ``G`` to reuse a loaded generator (the UI does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence, TYPE_CHECKING, Iterator

import numpy as np
import torch

from clipstyle.latents.constraints import SpecError
from clipstyle.pipelines.common import check_noise_mode, labels, load_network, pick_device
from clipstyle.pipelines.run import Run

if TYPE_CHECKING:
    from clipstyle.workflows.creative import BlendSettings, GenerateSettings, InterpolateSettings, MixSettings, RenderSettings, StyleblocksSettings

__all__ = ["styleblocks", "mix_grid", "interpolate", "render", "generate", "generate_images", "blend", "render_frames",
           "unique_labels"]

Progress = Callable[[int, int], None]


def unique_labels(labels_: Sequence[str]) -> list[str]:
    """File-name labels, a repeated one suffixed ``-1``, ``-2``… so no output replaces another."""
    seen: dict[str, int] = {}
    out = []
    for label in labels_:
        k = seen.get(label, 0)
        seen[label] = k + 1
        out.append(label if k == 0 else f"{label}-{k}")
    return out


@torch.no_grad()
def render_frames(G: Any, ws: torch.Tensor, noise_mode: str = "const", *, batch_size: int = 8,
                  callback: Progress | None = None, stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Synthesize ``ws`` float32 ``[F, num_ws, w_dim]`` in chunks → uint8 ``[F', H, W, C]``.

    ``callback(done, F)`` after each chunk; ``stop()`` True ends early (``F' < F`` frames, at least one
    chunk is always rendered).
    """
    from clipstyle.latents.styleblocks import render_ws

    chunks = []
    for i in range(0, ws.shape[0], batch_size):
        chunks.append(render_ws(G, ws[i : i + batch_size], noise_mode, batch_size))
        done = min(ws.shape[0], i + batch_size)
        if callback is not None:
            callback(done, int(ws.shape[0]))
        if stop is not None and done < ws.shape[0] and stop():
            break
    return np.concatenate(chunks)


def _setup(network: str, device: str, G: Any, class_idx: "int | str | None", blend_spec: str | None = None,
           quiet: bool = True) -> tuple[Any, str, torch.Tensor]:
    dev = pick_device(device, G)
    G = load_network(network, dev, blend_spec, G=G, progress=not quiet)
    return G, dev, labels(G.c_dim, class_idx, 1, dev)


def styleblocks(settings: "StyleblocksSettings | None" = None, /, *, G: Any = None, device: str = "auto",
                callback: Any = None, stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
                **options: Any) -> Run:
    """Scale one styleblock (row of ws) at a time: a GIF per block and a contact sheet.

    Row ``r`` of the start latent becomes ``center + f·(row − center)`` for ``frames`` factors ``f`` of
    ``scale`` (``center`` 0, or ``w_avg`` with ``around="avg"``); every other row stays bit-identical
    (Karras et al. 2019, §3: coarse rows pose/shape, fine rows colour).

    Returns:
        :class:`Run` named ``styleblocks-<source>``: ``result.png``/``sheet.png`` (rows = blocks, columns =
        factors), ``blockNN.gif`` and ``blockNN.npz`` per block; ``ws`` ``[blocks·frames, num_ws, w_dim]``.

    Raises:
        SpecError: not exactly one of ``seed``/``latents``, bad source. ValueError: bad ``scale``/``around``.
        BlockSpecError / LatentFileError: bad blocks / latent file.
    """
    from clipstyle.workflows.creative import StyleblocksSettings

    s = StyleblocksSettings.of(settings, **options)
    (seed, latents, blocks, scale, frames, around, network, truncation, class_idx, noise_mode, fps) = (
        s.seed, s.latents, s.blocks, s.scale, s.frames, s.around, s.network, s.truncation, s.class_idx, s.noise_mode,
        s.fps)
    from clipstyle.latents import parse_blocks
    from clipstyle.latents.constraints import parse_source
    from clipstyle.latents.styleblocks import factors, parse_range, styleblock_frames
    from clipstyle.render.files import make_grid

    from clipstyle.optimize.resources import MAX_FRAMES, check_count, check_resources, estimate_frames

    check_count("--frames", frames, MAX_FRAMES)
    lo, hi = parse_range(scale, "--scale")
    values = factors(lo, hi, frames)
    nm = check_noise_mode(noise_mode)
    from clipstyle.pipelines.common import latent_file_of, network_for_latents

    source = network_for_latents(None if latents is None else latent_file_of(latents), network)
    G, dev, c = _setup(source, device, G, class_idx)
    rows = parse_blocks(blocks, G.num_ws, G.block_groups())
    check_resources(estimate_frames("styleblocks", len(rows) * len(values), G), dev)
    (src,) = parse_source(str(seed) if latents is None else latents, G, dev, truncation, c, allow_many=False)
    sheet, all_ws, gifs, files = [], [], {}, {}
    for k, r in enumerate(rows):
        imgs, ws = styleblock_frames(G, src.ws, r, values, around, nm)
        gifs[f"block{r:02d}.gif"] = list(imgs)
        files[f"block{r:02d}.npz"] = {"ws": ws, "meta": {"block": r, "factors": values, "source": src.label}}
        sheet.extend(imgs)
        all_ws.append(ws.cpu())
        if callback is not None:
            callback(k + 1, len(rows))
    grid = make_grid(sheet, rows=len(rows), cols=len(values))
    settings = {"command": "styleblocks", "source": src.label, "blocks": list(rows), "factors": values,
                "around": around, "network": network, "truncation": truncation, "noise_mode": noise_mode}
    return Run(name=f"styleblocks-{src.label}", result=None, settings=settings, network=G.describe(),
               ws_=torch.cat(all_ws), images_=np.stack(sheet), result_image=grid, gif_frames=tuple(sheet),
               extra_images={"sheet.png": grid}, extra_gifs=gifs, extra_latents=files, fps=fps,
               meta={"factors": values, "blocks": list(rows), "source": src.label})


def mix_grid(settings: "MixSettings | None" = None, /, *, G: Any = None, device: str = "auto",
             callback: Any = None, stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
             **options: Any) -> Run:
    """Style-mixing grid (Karras et al. 2019, §3.1): cell (a, b) takes ``blocks`` from column source b and
    every other row of ws from row source a (``mix_styles``; each row a bit-exact copy of one source's).

    Returns:
        :class:`Run` named ``mix``: ``grid.png``/``result.png`` (top row: the column images, left column:
        the row images), ``mix-ROW-COL.png`` + ``.npz`` per cell; ``ws`` ``[rows·cols, num_ws, w_dim]``.

    Raises:
        SpecError / LatentFileError / BlockSpecError: bad sources or blocks.
    """
    from clipstyle.workflows.creative import MixSettings

    s = MixSettings.of(settings, **options)
    (rows, cols, blocks, network, truncation, class_idx, noise_mode) = (
        s.rows, s.cols, s.blocks, s.network, s.truncation, s.class_idx, s.noise_mode)
    from clipstyle.latents import parse_blocks
    from clipstyle.latents.constraints import parse_sources
    from clipstyle.latents.styleblocks import mix_styles, render_ws
    from clipstyle.render.files import make_grid

    nm = check_noise_mode(noise_mode)
    G, dev, c = _setup(network, device, G, class_idx)
    chosen = parse_blocks(blocks, G.num_ws, G.block_groups())
    a_src = parse_sources(rows, G, dev, truncation, c)
    b_src = parse_sources(cols, G, dev, truncation, c)
    a_img = render_ws(G, torch.cat([s.ws for s in a_src]), nm)
    b_img = render_ws(G, torch.cat([s.ws for s in b_src]), nm)
    cells = [np.full_like(a_img[0], 255), *b_img]
    a_names, b_names = unique_labels([s.label for s in a_src]), unique_labels([s.label for s in b_src])
    pngs, files, all_ws, all_img = {}, {}, [], []
    for i, a in enumerate(a_src):
        mixed = torch.cat([mix_styles(a.ws, b.ws, chosen) for b in b_src])
        imgs = render_ws(G, mixed, nm)
        cells.extend([a_img[i], *imgs])
        all_ws.append(mixed.cpu())
        all_img.append(imgs)
        for j, b in enumerate(b_src):
            name = f"mix-{a_names[i]}-{b_names[j]}"
            pngs[f"{name}.png"] = imgs[j]
            files[f"{name}.npz"] = {"ws": mixed[j : j + 1],
                                    "meta": {"row_source": a.label, "col_source": b.label,
                                             "blocks_from_col": list(chosen)}}
    grid = make_grid(cells, rows=len(a_src) + 1, cols=len(b_src) + 1)
    settings = {"command": "mix", "rows": [s.label for s in a_src], "cols": [s.label for s in b_src],
                "blocks_from_col": list(chosen), "network": network, "truncation": truncation}
    return Run(name="mix", result=None, settings=settings, network=G.describe(), ws_=torch.cat(all_ws),
               images_=np.concatenate(all_img), result_image=grid, extra_images={"grid.png": grid, **pngs},
               extra_latents=files)


def interpolate(sources: "str | InterpolateSettings | None" = None, /, *, G: Any = None, device: str = "auto",
                callback: Any = None, stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
                **options: Any) -> Run:
    """Interpolate between keyframe latents: ``frames`` per segment, lerp or slerp (Shoemake 1985; about
    ``w_avg`` in W, about 0 in Z), in W (``space="w"``) or in Z mapped with ``truncation`` (``"z"``).

    ``callback(done, total)`` after each rendered chunk; ``stop()`` True keeps the frames so far.

    Returns:
        :class:`Run` named ``interpolate-<keys>``: ``interpolation.gif`` (= ``progress.gif``),
        ``latents.npz`` with every frame's ws ``[F, num_ws, w_dim]``, ``result.png`` a strip of 8 frames.

    Raises:
        SpecError: fewer than two keyframes, an unknown mode/space, ``space="z"`` with a keyframe lacking z.
        LatentFileError: a bad latent file.
    """
    from clipstyle.workflows.creative import InterpolateSettings

    s = InterpolateSettings.of(sources, **options)
    (sources, frames, mode, space, loop, network, truncation, class_idx, noise_mode, fps) = (
        s.sources, s.frames, s.mode, s.space, s.loop, s.network, s.truncation, s.class_idx, s.noise_mode, s.fps)
    from clipstyle.latents.constraints import SpecError, parse_sources
    from clipstyle.latents.interpolate import frame_count, interpolate_path
    from clipstyle.render.files import make_grid

    nm = check_noise_mode(noise_mode)
    from clipstyle.pipelines.common import latent_file_of, network_for_latents

    files = [f for f in (latent_file_of(spec) for spec in sources) if f is not None]
    G, dev, c = _setup(network_for_latents(files[0] if files else None, network), device, G, class_idx)
    keys = [s for spec in sources for s in parse_sources(spec, G, dev, truncation, c)]
    if len(keys) < 2:
        raise SpecError("interpolation needs at least two keyframes")
    from clipstyle.optimize.resources import check_resources, estimate_frames

    check_resources(estimate_frames("interpolate", frame_count(len(keys), frames, loop), G), dev)  # before rendering
    if space == "z":
        lacking = [k.label for k in keys if k.z is None]
        if lacking:
            raise SpecError(f"--space z needs z for every keyframe, but {lacking[0]} is a latent file without z; "
                            "use seeds, files that store z, or --space w")
        zs = interpolate_path(torch.cat([k.z for k in keys]), frames, mode, loop)
        with torch.no_grad():
            ws = torch.cat([G.mapping(zs[i : i + 16], c.expand(len(zs[i : i + 16]), -1), truncation_psi=truncation)
                            for i in range(0, len(zs), 16)])
    else:
        center = G.w_avg.detach().to(torch.float32)
        ws = interpolate_path(torch.cat([k.ws for k in keys]), frames, mode, loop, center)
    imgs = render_frames(G, ws, nm, callback=callback, stop=stop)
    ws = ws[: len(imgs)].cpu()
    pick = np.unique(np.linspace(0, len(imgs) - 1, min(8, len(imgs))).round().astype(int))
    labels_ = [k.label for k in keys]
    settings = {"command": "interpolate", "keyframes": labels_, "frames": frames, "mode": mode, "space": space,
                "loop": loop, "total_frames": len(imgs), "network": network, "truncation": truncation}
    return Run(name="interpolate-" + "-".join(labels_[:4]), result=None, settings=settings, network=G.describe(),
               ws_=ws, images_=imgs, result_image=make_grid(list(imgs[pick]), rows=1), gif_frames=tuple(imgs),
               extra_gifs={"interpolation.gif": list(imgs)}, fps=fps,
               meta={"keyframes": labels_, "mode": mode, "space": space})


def render(latents: "str | RenderSettings | None" = None, /, *, G: Any = None, device: str = "auto",
           callback: Any = None, stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
           **options: Any) -> Run:
    """Render a latent file (e.g. a projection) or seeds, optionally in a blended network.

    Unless told otherwise, a latent file is rendered the way it was made: with the network recorded in
    its meta (``network=None``; ``ffhq`` when it records none) and, with ``noise_mode="const"``, the
    StyleGAN2 noise maps stored in it by a projection (``file_noise=False`` uses the network's own).

    Returns:
        :class:`Run` named ``render-<source>`` (``ws_`` ``[N, num_ws, w_dim]``, ``images_`` ``[N, H, W, C]``;
        ``run.image`` is one image or a grid).

    Raises:
        SpecError / LatentFileError: bad sources. FileNotFoundError / CheckpointError: the network.
    """
    from clipstyle.workflows.creative import RenderSettings

    s = RenderSettings.of(latents, **options)
    (latents, network, blend, truncation, class_idx, noise_mode, file_noise) = (
        s.latents, s.network, s.blend, s.truncation, s.class_idx, s.noise_mode, s.file_noise)
    from clipstyle.latents.constraints import parse_sources
    from clipstyle.latents.styleblocks import render_ws
    from clipstyle.pipelines.common import latent_file_of, network_for_latents, read_latent_meta

    path = latent_file_of(latents)
    meta = read_latent_meta(path) if path is not None else {}
    source = network_for_latents(path, network, meta)
    G, dev, c = _setup(source, device, G, class_idx, blend)
    srcs = parse_sources(latents, G, dev, truncation, c)
    ws = torch.cat([s.ws for s in srcs])
    synth = G
    noise_used = False
    if path is not None and file_noise and check_noise_mode(noise_mode) == "const":
        from clipstyle.inversion.noise import SynthesisWithNoise, read_noise

        noise = read_noise(path, G, meta.get("noise"))
        if noise:
            synth, noise_used = SynthesisWithNoise(G, noise), True
    styles = _file_styles(path, G, ws)
    if styles is not None:  # a --space s result: its image is the stored styles' (ws is only their start)
        from clipstyle.latents.stylespace import render_flat
        from clipstyle.optimize.loop import to_uint8_frames

        from clipstyle.pipelines.photo_edit import StyleSynthesisWithNoise

        with torch.no_grad():  # with the file's noise maps when they are used (an edited projection)
            imgs = to_uint8_frames(render_flat(StyleSynthesisWithNoise(G, synth.noise) if noise_used else G, ws,
                                               styles, check_noise_mode(noise_mode)))
    else:
        imgs = render_ws(synth, ws, check_noise_mode(noise_mode))
    settings = {"command": "render", "latents": latents, "network": source,
                "blend": blend, "truncation": truncation, "noise_mode": noise_mode, "file_noise": noise_used}
    return Run(name=f"render-{srcs[0].label}", result=None, settings=settings, network=G.describe(),
               ws_=ws.cpu(), images_=imgs)


def _file_styles(path: Any, G: Any, ws: torch.Tensor) -> torch.Tensor | None:
    """The StyleSpace codes ``styles`` float32 ``[N, C]`` a ``--space s`` run stored in ``path`` (None when it has
    none).

    Raises:
        LatentFileError: styles that do not fit ``G``'s S layout or the file's ws count, non-finite values (one
            line each).
    """
    import numpy as np

    from clipstyle.generator.stylespace import num_channels
    from clipstyle.latents import LatentFileError

    if path is None or Path(path).suffix.lower() != ".npz":  # only our .npz latent files carry styles
        return None
    from clipstyle.io.arrays import read_npz

    data = read_npz(path, what="latent file")  # the budgeted door (the latent parser read it already)
    if "styles" not in data:
        return None
    arr = np.asarray(data["styles"], dtype=np.float32)
    need = num_channels(G)
    if arr.shape != (ws.shape[0], need):
        raise LatentFileError(f"{path}: its StyleSpace codes are {list(arr.shape)}, this network needs "
                              f"[{ws.shape[0]}, {need}]")
    if not np.isfinite(arr).all():
        raise LatentFileError(f"{path}: its StyleSpace codes contain NaN or infinite values")
    return torch.from_numpy(arr.copy())


def parse_translate(spec: "str | tuple[float, float] | None") -> tuple[float, float] | None:
    """``--translate X,Y`` → ``(x, y)``. Raises SpecError when malformed."""
    if spec is None or isinstance(spec, tuple):
        return spec
    try:
        tx, ty = (float(v) for v in str(spec).split(","))
    except ValueError:
        raise SpecError(f"--translate must be X,Y (e.g. 0.3,0), got {spec!r}") from None
    return tx, ty


def generate(settings: "GenerateSettings | None" = None, /, *, G: Any = None, device: str = "auto",
             callback: Any = None, stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
             note: "Callable[[str], None] | None" = None, **options: Any) -> Run:
    """Render images for seeds like NVIDIA's ``gen_images.py`` (``z = RandomState(seed).randn(1, z_dim)``).

    ``truncation``/``truncation_cutoff`` left unset take the network's documented defaults (StyleGAN1: psi 0.7
    on rows 0-7, reported through ``note``; every other family: none). ``truncate_to="label"`` truncates a
    conditional network towards the mean w of its ``--class`` label instead of the global ``w_avg``.
    ``rotate``/``translate`` set a StyleGAN3 network's input transform (default: the checkpoint's).

    Returns:
        :class:`Run` named ``generate-seeds-<seeds>``: ``seedNNNN.png`` + ``seedNNNN.npz`` (ws, z, c) per seed,
        ``grid.png`` with ``grid``; ``ws`` ``[S, num_ws, w_dim]``, ``images`` ``[S, H, W, C]``.

    Raises:
        SpecError: bad seeds, noise mode, truncate_to or translate; rotate/translate on a non-StyleGAN3 network.
        LabelError: a bad ``--class``.
    """
    from clipstyle.optimize.resources import check_resources, estimate_generate
    from clipstyle.render.files import make_grid
    from clipstyle.workflows.creative import GenerateSettings

    s = GenerateSettings.of(settings, **options)
    G, seed_list, render, record = _generate_setup(s, device, G, note)
    check_resources(estimate_generate(len(seed_list), G, grid=True), render["device"])  # holds every image
    pngs, files, all_ws, images, zs = {}, {}, [], [], []
    for seed, img, item in generate_images(G, seed_list, **render):
        pngs[f"seed{seed:04d}.png"] = img
        files[f"seed{seed:04d}.npz"] = item
        images.append(img)
        all_ws.append(item["ws"].cpu())
        zs.append(item["z"].cpu())
    sheet = make_grid(images)
    if s.grid:
        pngs["grid.png"] = sheet
    c = render["c"]
    return Run(name=f"generate-seeds-{s.seeds}", result=None, settings=record, network=G.describe(),
               z=torch.cat(zs), c=c.expand(len(seed_list), -1).cpu(), ws_=torch.cat(all_ws),
               images_=np.stack(images), result_image=sheet, extra_images=pngs, extra_latents=files)


def _generate_setup(s: Any, device: str, G: Any, note: "Callable[[str], None] | None"
                    ) -> tuple[Any, list[int], dict[str, Any], dict[str, Any]]:
    """What :func:`generate` and :func:`clipstyle.pipelines.generate_stream.generate_to` share (``s``: the
    ``GenerateSettings``): seeds, the network, labels, the input transform, truncation.

    Returns ``(G, seed list, keywords of generate_images, the settings record)``.
    """
    from clipstyle.generator.stylegan1 import resolve_truncation
    from clipstyle.generator.stylegan3 import input_transform
    from clipstyle.latents.labels import label_w_avg
    from clipstyle.pipelines.common import parse_seeds

    nm = check_noise_mode(s.noise_mode)
    shift = parse_translate(s.translate)
    seed_list = parse_seeds(s.seeds)
    dev = pick_device(device, G)
    G = load_network(s.network, dev, G=G)
    c = labels(G.c_dim, s.class_idx, 1, dev, s.label_scale)
    if s.rotate is not None or shift is not None:
        inp = getattr(G.synthesis, "input", None)
        if getattr(inp, "transform", None) is None:
            raise SpecError("--rotate/--translate need a StyleGAN3 network (its input transform)")
        inp.transform.copy_(input_transform(s.rotate, shift).to(inp.transform))
    psi, cutoff, used = resolve_truncation(G, s.truncation, s.truncation_cutoff)
    if used and note is not None:
        note(used)
    center = None
    if s.truncate_to == "label":
        if G.c_dim == 0:
            raise SpecError("--truncate-to label needs a conditional network")
        center = label_w_avg(G, c)
    render = {"c": c, "psi": psi, "cutoff": cutoff, "center": center, "noise_mode": nm, "truncate_to": s.truncate_to,
              "device": dev}
    record = {"command": "generate", "network": s.network, "seeds": seed_list, "truncation": psi,
              "truncation_cutoff": cutoff, "truncation_default_used": bool(used), "truncate_to": s.truncate_to,
              "class": s.class_idx, "label_scale": s.label_scale, "noise_mode": s.noise_mode, "rotate": s.rotate,
              "translate": list(shift) if shift else None}
    return G, seed_list, render, record


def generate_images(G: Any, seed_list: Sequence[int], *, c: torch.Tensor, psi: float, cutoff: int | None,
                    center: torch.Tensor | None, noise_mode: str, truncate_to: str, device: str = "cpu"
                    ) -> "Iterator[tuple[int, np.ndarray, dict[str, Any]]]":
    """Render seeds one at a time: yields ``(seed, uint8 image [H, W, C], latent item)`` where the item is
    ``{"ws": [1, num_ws, w_dim], "z": [1, z_dim], "c", "meta"}`` (what ``seedNNNN.npz`` holds). Nothing is kept
    between seeds, so any number of seeds streams in the memory of one."""
    from clipstyle.latents import start_ws
    from clipstyle.latents.labels import truncate_ws
    from clipstyle.optimize.loop import to_uint8_frames

    with torch.no_grad():
        for seed in seed_list:
            if center is None:
                ws, z = start_ws(G, seed=seed, truncation_psi=psi, c=c, truncation_cutoff=cutoff)
            else:
                ws, z = start_ws(G, seed=seed, truncation_psi=1.0, c=c)
                ws = truncate_ws(ws, center, psi, cutoff)
            img = to_uint8_frames(G.synthesis(ws, noise_mode=noise_mode))[0]
            yield seed, img, {"ws": ws, "z": z, "c": c,
                              "meta": {"seed": seed, "truncation_psi": psi, "truncation_cutoff": cutoff,
                                       "truncate_to": truncate_to, "network": G.source.source}}


def blend(network_a: "str | BlendSettings | None" = None, network_b: str | None = None, /, *, G_a: Any = None,
          G_b: Any = None, device: str = "auto", callback: Any = None, stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
          **options: Any) -> Any:
    """Network blending (Pinkney & Adler 2020, "toonify"): synthesis layers at resolutions <= ``at`` (and
    mapping, ``w_avg``) from A, the rest from B, the switch spread over ``smooth`` octaves.

    ``device="auto"`` with ``G_a`` given keeps G_a's device (a given model is moved, in place, only when another
    device is named).

    Returns:
        the blended generator on ``device`` (``save_native(G, path)`` writes it).

    Raises:
        CheckpointError: the architectures differ. ValueError: a bad ``at``/``smooth``.
    """
    from clipstyle.workflows.creative import BlendSettings

    s = BlendSettings.of(network_a, network_b, **options)
    network_a, network_b, at, smooth = s.network_a, s.network_b, s.at, s.smooth
    from clipstyle.generator.blend import blend_generators, check_cut

    dev = pick_device(device, G_a)
    G_a = load_network(network_a, dev, G=G_a)
    check_cut(G_a, at)  # a cut at the top resolution would take nothing from B: say so before B loads
    G_b = load_network(network_b, dev, G=G_b)
    return blend_generators(G_a, G_b, at, smooth).to(dev)
