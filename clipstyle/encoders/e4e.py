"""The e4e encoder (Tov et al. 2021, "Designing an Encoder for StyleGAN Image Manipulation", §3.2), read from
the released checkpoints (``e4e_ffhq_encode.pt``).

Architecture (a pSp feature pyramid, Richardson et al. 2021, §3, over an IR-SE50 backbone,
:mod:`clipstyle.encoders.irse`), input 256² RGB in [-1, 1]:

* taps ``c1, c2, c3`` = the feature maps after backbone stages 2, 3, 4 (64², 32², 16² for a 256² input);
* FPN: ``p2 = up(c3) + latlayer1(c2)``, ``p1 = up(p2) + latlayer2(c1)`` (bilinear, align_corners=True;
  latlayers are 1×1 convs with bias);
* map2style heads: ``log2(s)`` × (3×3 stride-2 conv with bias → LeakyReLU 0.01) down to 1×1, then an
  equalized linear (``weight/√in``, bias as is). A head with 4 convs reads ``c3``, 5 reads ``p2``, 6 reads
  ``p1`` (the coarse, middle and fine styles);
* e4e (``Encoder4Editing``): ``w = head₀(c3)`` for every row, then row i += headᵢ (the offsets Δᵢ of §3.2);
  pSp (``GradualStyleEncoder``): row i = headᵢ of its map;
* finally ``latent_avg`` (``[n_styles, w_dim]``, or ``[w_dim]``) is added row by row.

Every width and count comes from the tensor shapes; ``opts['stylegan_size']`` is only cross-checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clipstyle.encoders.files import WeightsFileError, read_torch_file
from clipstyle.encoders.irse import IRSEBackbone, clean_state
from clipstyle.optimize.precision import model_autocast
from clipstyle.generator.formats.common import CheckpointError

__all__ = ["Encoder", "encoder_from_checkpoint", "load_encoder"]

INPUT_SIZE = 256


class StyleHead(nn.Module):
    """map2style: ``n_convs`` × (conv3×3 s2 + LeakyReLU 0.01) to 1×1, then an equalized linear."""

    def __init__(self, in_c: int, out_c: int, n_convs: int, w_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(out_c, w_dim)

    def forward(self, x: Tensor) -> Tensor:  # [N, C, s, s] -> [N, w_dim]
        x = self.convs(x).flatten(1)
        return F.linear(x, self.linear.weight / math.sqrt(self.linear.weight.shape[1]), self.linear.bias)


def _up_add(x: Tensor, y: Tensor) -> Tensor:
    return F.interpolate(x, size=y.shape[2:], mode="bilinear", align_corners=True) + y


class Encoder(nn.Module):
    """An e4e / pSp encoder: images ``[N, 3, H, W]`` in [-1, 1] → ``ws`` ``[N, num_ws, w_dim]`` (latent_avg added).

    Attributes:
        num_ws, w_dim: the latent layout (matches the checkpoint's decoder).
        kind: ``"e4e"`` (Encoder4Editing) or ``"psp"`` (GradualStyleEncoder).
        stylegan_size: the decoder resolution from ``opts`` (None when absent).
    """

    def __init__(self, backbone: IRSEBackbone, heads: list[StyleHead], lat1: nn.Conv2d, lat2: nn.Conv2d,
                 latent_avg: Tensor, kind: str, stylegan_size: int | None = None) -> None:
        super().__init__()
        self.body = backbone
        self.styles = nn.ModuleList(heads)
        self.latlayer1, self.latlayer2 = lat1, lat2
        self.register_buffer("latent_avg", latent_avg)
        self.kind = kind
        self.stylegan_size = stylegan_size
        self.num_ws = len(heads)
        self.w_dim = int(latent_avg.shape[-1])
        self.source = ""

    def codes_raw(self, x: Tensor) -> Tensor:
        """The encoder output before ``latent_avg`` (``[N, num_ws, w_dim]``) for a 256² input."""
        _, c1, c2, c3 = self.body.taps(x)
        p2 = p1 = None
        maps: list[Tensor] = []
        for head in self.styles:
            n = len(head.convs) // 2
            if n == round(math.log2(c3.shape[-1])):
                maps.append(c3)
            elif n == round(math.log2(c2.shape[-1])):
                p2 = _up_add(c3, self.latlayer1(c2)) if p2 is None else p2
                maps.append(p2)
            else:
                p2 = _up_add(c3, self.latlayer1(c2)) if p2 is None else p2
                p1 = _up_add(p2, self.latlayer2(c1)) if p1 is None else p1
                maps.append(p1)
        if self.kind == "psp":
            return torch.stack([h(m) for h, m in zip(self.styles, maps)], dim=1)
        w0 = self.styles[0](maps[0])
        deltas = [torch.zeros_like(w0)] + [h(m) for h, m in zip(list(self.styles)[1:], maps[1:])]
        return w0[:, None] + torch.stack(deltas, dim=1)

    def forward(self, images: Tensor) -> Tensor:
        """``images`` float ``[N, 3, H, W]`` in [-1, 1] (resized to 256² with antialiased bilinear when needed)
        → ``ws`` ``[N, num_ws, w_dim]``.

        Raises:
            ValueError: not ``[N, 3, H, W]``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"the encoder takes RGB images [N, 3, H, W], got {list(images.shape)}")
        x = images.to(self.latent_avg)
        if tuple(x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=True)
        with model_autocast(x.device):  # inside model_precision (a no-op elsewhere)
            codes = self.codes_raw(x.contiguous())
        return codes.to(self.latent_avg.dtype) + self.latent_avg.reshape(-1, self.w_dim)[None]


def encoder_from_checkpoint(ckpt: Mapping[str, Any], name: str = "checkpoint") -> Encoder:
    """Build the :class:`Encoder` of a loaded e4e/pSp checkpoint dict (float32, CPU, eval, frozen).

    Raises:
        WeightsFileError: not an e4e/pSp checkpoint, or tensors that do not fit the layout.
    """
    from clipstyle.encoders.irse import load_backbone

    state = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping) or "encoder.input_layer.0.weight" not in state:
        hint = " (this looks like ArcFace weights: pass it as --id-weights)" if isinstance(ckpt, Mapping) and \
            "output_layer.3.weight" in ckpt else ""
        raise WeightsFileError(f"{name} is not an e4e checkpoint: no state_dict with encoder.* tensors{hint}")
    avg = ckpt.get("latent_avg")
    if not torch.is_tensor(avg) or avg.ndim not in (1, 2):
        raise WeightsFileError(f"{name} has no latent_avg tensor [n_styles, w_dim]; e4e needs it")
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), Mapping) else {}
    enc = clean_state(state, "encoder.")
    body = {k: v for k, v in enc.items() if k.startswith(("input_layer.", "body."))}
    try:
        with torch.random.fork_rng(devices=[]):
            backbone = load_backbone(body)
            heads = []
            while f"styles.{len(heads)}.linear.weight" in enc:
                i = len(heads)
                n_convs = sum(1 for k in enc if k.startswith(f"styles.{i}.convs.") and k.endswith(".weight"))
                first = enc[f"styles.{i}.convs.0.weight"]
                lin = enc[f"styles.{i}.linear.weight"]
                heads.append(StyleHead(int(first.shape[1]), int(first.shape[0]), n_convs, int(lin.shape[0])))
            if not heads:
                raise CheckpointError("no map2style heads (encoder.styles.0)")
            lat = [nn.Conv2d(int(enc[f"latlayer{j}.weight"].shape[1]), int(enc[f"latlayer{j}.weight"].shape[0]), 1)
                   for j in (1, 2)]
    except KeyError as exc:
        raise WeightsFileError(f"{name}: the e4e encoder lacks {exc.args[0]}") from None
    except CheckpointError as exc:
        raise WeightsFileError(f"{name}: {exc}") from None
    kind = "psp" if str(opts.get("encoder_type", "Encoder4Editing")) == "GradualStyleEncoder" else "e4e"
    rows = avg.reshape(-1, avg.shape[-1]).to(torch.float32)
    if rows.shape[0] not in (1, len(heads)) or rows.shape[1] != heads[0].linear.weight.shape[0]:
        raise WeightsFileError(f"{name}: latent_avg {list(avg.shape)} does not fit {len(heads)} style heads")
    size = opts.get("stylegan_size")
    if isinstance(size, int) and size >= 4 and 2 * int(math.log2(size)) - 2 != len(heads):
        raise WeightsFileError(f"{name}: opts say stylegan_size {size} ({2 * int(math.log2(size)) - 2} styles) "
                               f"but the encoder has {len(heads)} style heads")
    model = Encoder(backbone, heads, lat[0], lat[1], rows.clone(), kind, size if isinstance(size, int) else None)
    own = {k for k in model.state_dict() if not k.startswith("body.") and k != "latent_avg"}
    theirs = {k for k in enc if not k.startswith(("input_layer.", "body."))}
    if own != theirs:
        extra, missing = sorted(theirs - own), sorted(own - theirs)
        raise WeightsFileError(f"{name}: encoder tensors do not fit e4e's layout (unexpected {extra[:3]}, "
                               f"missing {missing[:3]})")
    head_state = {k: enc[k].to(torch.float32) for k in theirs}
    bad = [k for k, v in model.state_dict().items() if k in head_state and v.shape != head_state[k].shape]
    if bad:
        raise WeightsFileError(f"{name}: wrong shape {', '.join(bad[:3])}")
    model.load_state_dict({**head_state, **{f"body.{k}": v for k, v in backbone.state_dict().items()},
                           "latent_avg": rows.clone()})
    return model.eval().requires_grad_(False)


def load_encoder(source: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """Load an e4e (or pSp) checkpoint (``e4e_ffhq_encode.pt``) as an :class:`Encoder` on ``device``.

    Read with ``torch.load(weights_only=True, map_location='cpu')`` (files saved during GPU training carry
    ``cuda:0`` tags; nothing in the file runs). The decoder of the same file is
    ``clipstyle.load_generator(source)``.

    Raises:
        InputPathError: missing, a folder, a FIFO, a device or unreadable (a usage error).
        UnsafePickleError: the file's pickle asks for code (nothing ran).
        WeightsFileError: not an e4e checkpoint (e.g. ArcFace weights), or corrupt.
    """
    path = Path(source)
    model = encoder_from_checkpoint(read_torch_file(path, "e4e checkpoint"), path.name)
    model.source = str(path)
    return model.to(device)
