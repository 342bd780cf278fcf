"""IR-SE backbone (ArcFace's "improved residual" network with squeeze-and-excitation), shared by the ArcFace
identity model and the e4e encoder.

Architecture (Deng et al. 2019, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", §3 and the
IR block of their Fig. 7; SE units from Hu et al. 2018): an input stem ``conv3×3 → BN → PReLU`` and four
stages of bottleneck units. A unit computes

    res = SE(BN(conv3×3_s(PReLU(conv3×3(BN(x))))))          (s = the unit's stride)
    out = res + shortcut(x)

where the shortcut is ``conv1×1_s → BN`` when the width changes and a stride-s subsampling otherwise, and
SE multiplies by ``sigmoid(W₂ ReLU(W₁ avgpool(res)))``. The first unit of every stage has stride 2.

Nothing is assumed about the widths: the stem width, the four stage widths, the SE bottleneck and (for
ArcFace) the embedding size are read from the tensor shapes of the state dict, and the depth (50, 100 or
152 layers) from the number of units. Parameter names follow the released ``model_ir_se50.pth`` and the e4e
checkpoints (``input_layer.*``, ``body.{k}.res_layer.{0..5}.*``, ``body.{k}.shortcut_layer.{0,1}.*``,
``output_layer.*``), so a state dict loads by name.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from clipstyle.generator.formats.common import CheckpointError

__all__ = ["STAGE_UNITS", "IRSEBackbone", "IRSEConfig", "clean_state", "irse_config"]

#: Units per stage for each depth (the IR-SE50/100/152 layouts).
STAGE_UNITS = {24: (3, 4, 14, 3), 49: (3, 13, 30, 3), 50: (3, 8, 36, 3)}


class SEModule(nn.Module):
    """Squeeze-and-excitation: ``x · sigmoid(fc2(ReLU(fc1(avgpool(x)))))`` (1×1 convs without bias)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # [N, C, H, W] -> [N, C, H, W]
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class IRSEUnit(nn.Module):
    """One bottleneck unit ``in_c → out_c`` with stride ``stride`` (see the module docstring)."""

    def __init__(self, in_c: int, out_c: int, stride: int, se_hidden: int) -> None:
        super().__init__()
        self.stride = stride
        if in_c != out_c:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_c, out_c, 1, stride, bias=False), nn.BatchNorm2d(out_c))
        else:
            self.shortcut_layer = None
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_c), nn.Conv2d(in_c, out_c, 3, 1, 1, bias=False), nn.PReLU(out_c),
            nn.Conv2d(out_c, out_c, 3, stride, 1, bias=False), nn.BatchNorm2d(out_c), SEModule(out_c, se_hidden))

    def forward(self, x: Tensor) -> Tensor:
        short = self.shortcut_layer(x) if self.shortcut_layer is not None else x[:, :, ::self.stride, ::self.stride]
        return self.res_layer(x) + short


class IRSEConfig:
    """Widths of an IR-SE backbone, all read from a state dict (see :func:`irse_config`)."""

    def __init__(self, stem: int, units: tuple[tuple[int, int, int, int], ...], stages: tuple[int, ...],
                 embedding: int | None, flat: int | None) -> None:
        self.stem = stem
        self.units = units  # (in_c, out_c, stride, se_hidden) per unit
        self.stages = stages  # units per stage
        self.embedding = embedding  # output_layer Linear out features (None: no output layer)
        self.flat = flat  # output_layer Linear in features

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Index of the last unit of each stage (e.g. 2, 6, 20, 23 for IR-SE50)."""
        ends, total = [], 0
        for n in self.stages:
            total += n
            ends.append(total - 1)
        return tuple(ends)


def clean_state(state: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """The entries under ``prefix`` with it stripped, without BatchNorm ``num_batches_tracked`` counters
    (old files lack them, newer ones have them; they play no part in eval mode)."""
    return {k[len(prefix):]: v for k, v in state.items()
            if k.startswith(prefix) and not k.endswith("num_batches_tracked")}


def irse_config(state: Mapping[str, Tensor]) -> IRSEConfig:
    """Infer an :class:`IRSEConfig` from a backbone state dict (prefix already stripped).

    Raises:
        CheckpointError: a key the layout needs is missing, or the number of units is not 24/49/50.
    """
    def need(key: str) -> Tensor:
        if key not in state:
            raise CheckpointError(f"not an IR-SE backbone: the state dict lacks {key}")
        return state[key]

    stem = int(need("input_layer.0.weight").shape[0])
    n = 0
    while f"body.{n}.res_layer.1.weight" in state:
        n += 1
    if n not in STAGE_UNITS:
        raise CheckpointError(f"an IR-SE backbone has 24, 49 or 50 units (IR-SE50/100/152), this one has {n}")
    stages = STAGE_UNITS[n]
    firsts, total = set(), 0
    for count in stages:
        firsts.add(total)
        total += count
    units = []
    for k in range(n):
        conv = need(f"body.{k}.res_layer.1.weight")  # [out, in, 3, 3]
        hidden = int(need(f"body.{k}.res_layer.5.fc1.weight").shape[0])
        units.append((int(conv.shape[1]), int(conv.shape[0]), 2 if k in firsts else 1, hidden))
    embedding = flat = None
    if "output_layer.3.weight" in state:
        lin = state["output_layer.3.weight"]
        embedding, flat = int(lin.shape[0]), int(lin.shape[1])
    return IRSEConfig(stem, tuple(units), stages, embedding, flat)


class IRSEBackbone(nn.Module):
    """IR-SE backbone built from an :class:`IRSEConfig`; ``forward`` returns the feature map after the last
    unit, :meth:`taps` the map after each stage, :meth:`embed` ArcFace's L2-normalised embedding."""

    def __init__(self, cfg: IRSEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_layer = nn.Sequential(nn.Conv2d(3, cfg.stem, 3, 1, 1, bias=False), nn.BatchNorm2d(cfg.stem),
                                         nn.PReLU(cfg.stem))
        self.body = nn.Sequential(*[IRSEUnit(*u) for u in cfg.units])
        if cfg.embedding is not None:
            width = cfg.units[-1][1]
            self.output_layer = nn.Sequential(nn.BatchNorm2d(width), nn.Dropout(0.0), nn.Flatten(),
                                              nn.Linear(cfg.flat, cfg.embedding), nn.BatchNorm1d(cfg.embedding))
        else:
            self.output_layer = None

    def taps(self, x: Tensor) -> list[Tensor]:
        """Feature maps after each of the four stages: ``x [N, 3, H, W]`` → ``[[N, C_s, H/2^s, W/2^s]]``."""
        ends = set(self.cfg.stage_ends)
        x = self.input_layer(x)
        out = []
        for k, unit in enumerate(self.body):
            x = unit(x)
            if k in ends:
                out.append(x)
        return out

    def embed(self, x: Tensor) -> Tensor:
        """ArcFace embedding ``[N, D]`` (unit L2 norm, no epsilon) of faces ``[N, 3, 112, 112]`` in [-1, 1].

        Raises:
            ValueError: the backbone has no output layer, or the input does not flatten to its Linear.
        """
        if self.output_layer is None:
            raise ValueError("this IR-SE backbone has no output layer (an encoder body, not ArcFace)")
        feat = self.body(self.input_layer(x))
        if feat[0].numel() != self.cfg.flat:
            raise ValueError(f"the faces must be [N, 3, 112, 112]; got {list(x.shape)}")
        e = self.output_layer(feat)
        return e / e.norm(p=2, dim=1, keepdim=True)


def load_backbone(state: Mapping[str, Tensor]) -> IRSEBackbone:
    """Build an :class:`IRSEBackbone` from a (prefix-stripped) state dict and load it exactly (eval, frozen).

    Raises:
        CheckpointError: missing, unexpected or mis-shaped tensors.
    """
    state = clean_state(state)
    with torch.random.fork_rng(devices=[]):
        net = IRSEBackbone(irse_config(state))
    own = clean_state(net.state_dict())
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or bad:
        parts = [f"{what} {', '.join(keys[:3])}" for what, keys in
                 (("missing", missing), ("unexpected", extra), ("wrong shape", bad)) if keys]
        raise CheckpointError("not an IR-SE backbone state dict: " + "; ".join(parts))
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=False)
    return net.eval().requires_grad_(False)
