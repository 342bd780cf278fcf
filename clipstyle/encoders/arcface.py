"""ArcFace identity (Deng et al. 2019) on the IR-SE50 backbone, as StyleCLIP, e4e, PTI and HyperStyle use it.

``load_face_identity("model_ir_se50.pth")`` reads the released backbone (TreB1eN's InsightFace_Pytorch
``state_dict``, legacy or zip torch format, with or without BatchNorm counters); every width comes from the
tensor shapes. The identity feature of an aligned face image of any size is computed the way those projects
compute their identity loss:

1. ``AdaptiveAvgPool2d(256)`` when the image is not 256² (an exact 4×4 average for 1024² FFHQ images),
2. the fixed crop ``[35:223, 32:220]`` (the face region of an FFHQ-aligned 256² image),
3. ``AdaptiveAvgPool2d(112)`` (188 → 112, unequal windows), and
4. the backbone's L2-normalised embedding.

``similarity(x, y)`` is the cosine of those features (``[N]``); the identity loss is ``1 − similarity``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clipstyle.encoders.files import WeightsFileError, read_torch_file
from clipstyle.encoders.irse import IRSEBackbone, load_backbone
from clipstyle.optimize.precision import model_autocast

__all__ = ["FaceIdentity", "crop_and_pool", "load_face_identity"]

#: The identity crop of a 256² FFHQ-aligned face: rows 35:223, columns 32:220.
CROP = (35, 223, 32, 220)


def crop_and_pool(images: Tensor) -> Tensor:
    """``[N, 3, H, W]`` aligned faces in [-1, 1] → ``[N, 3, 112, 112]`` (pool to 256², crop, pool to 112²)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"face images must be [N, 3, H, W] RGB, got {list(images.shape)}")
    x = images if tuple(images.shape[2:]) == (256, 256) else F.adaptive_avg_pool2d(images, (256, 256))
    top, bottom, left, right = CROP
    return F.adaptive_avg_pool2d(x[:, :, top:bottom, left:right], (112, 112))


class FaceIdentity(nn.Module):
    """An ArcFace IR-SE backbone in eval mode, weights frozen (gradients flow to the inputs)."""

    def __init__(self, backbone: IRSEBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    @property
    def dim(self) -> int:
        """Embedding size D (512 for the released model)."""
        return int(self.backbone.cfg.embedding)

    def embed(self, faces: Tensor) -> Tensor:
        """Unit-norm embeddings ``[N, D]`` of tight face crops ``[N, 3, 112, 112]`` float in [-1, 1].

        Raises:
            ValueError: wrong shape.
        """
        if faces.ndim != 4 or tuple(faces.shape[1:]) != (3, 112, 112):
            raise ValueError(f"ArcFace takes faces [N, 3, 112, 112], got {list(faces.shape)}")
        with model_autocast(faces.device):  # the loop's precision (a no-op outside it)
            e = self.backbone.embed(faces.contiguous())
        if e.dtype == faces.dtype:
            return e
        e = e.to(faces.dtype)  # renormalized in the input's precision after a 16-bit backbone
        return e / e.norm(p=2, dim=1, keepdim=True)

    def features(self, images: Tensor) -> Tensor:
        """Identity features ``[N, D]`` of FFHQ-aligned face images ``[N, 3, H, W]`` in [-1, 1] (any size)."""
        return self.embed(crop_and_pool(images))

    def similarity(self, x: Tensor, y: Tensor) -> Tensor:
        """Cosine identity similarity ``[N]`` of aligned face images ``x`` and ``y`` (``[N or 1, 3, H, W]``)."""
        return (self.features(x) * self.features(y)).sum(dim=1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:  # identity loss [N]
        return 1.0 - self.similarity(x, y)


def load_face_identity(source: str | Path, device: str | torch.device = "cpu") -> FaceIdentity:
    """Load ArcFace IR-SE weights (``model_ir_se50.pth``) into a :class:`FaceIdentity` on ``device``.

    The file is read with ``torch.load(weights_only=True)`` (nothing in it runs). A state dict under a
    ``state_dict`` key, or with a ``module.``/``facenet.`` prefix, is accepted too.

    Raises:
        InputPathError: missing, a folder, a FIFO, a device or unreadable (a usage error).
        UnsafePickleError: the file's pickle asks for code (nothing ran).
        WeightsFileError: not ArcFace IR-SE weights (e.g. an e4e checkpoint), or corrupt.
    """
    from clipstyle.generator.formats.common import CheckpointError

    path = Path(source)
    data = read_torch_file(path, "ArcFace weights file")
    state = data.get("state_dict", data) if isinstance(data.get("state_dict"), dict) else data
    for prefix in ("module.", "facenet."):
        if state and all(str(k).startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    if not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsFileError(f"{path.name} is not ArcFace weights: it is not a state dict of tensors")
    if "output_layer.3.weight" not in state:
        hint = " (this looks like an e4e checkpoint: pass it as --encoder)" if any(
            str(k).startswith("encoder.") for k in state) else ""
        raise WeightsFileError(f"{path.name} is not ArcFace IR-SE weights: no output_layer.3.weight{hint}")
    try:
        backbone = load_backbone(state)
    except CheckpointError as exc:
        raise WeightsFileError(f"{path.name}: {exc}") from None
    return FaceIdentity(backbone).to(device).eval().requires_grad_(False)


class IdentityLoss:
    """Loss term ``1 − similarity(x, x0)`` (mean over the batch) for :class:`~clipstyle.guidance.CombinedLoss`:
    the ArcFace identity loss of StyleCLIP (Patashnik et al. 2021, eq. 2). ``x0``: ``[1 or N, 3, H, W]``."""

    name = "identity"

    def __init__(self, model: FaceIdentity, reference: Tensor) -> None:
        self.model = model
        with torch.no_grad():
            self.ref = model.features(reference.detach())  # [1 or N, D]

    def __call__(self, images: Tensor, ws: Tensor | None = None) -> Tensor:
        return (1.0 - (self.model.features(images) * self.ref).sum(dim=1)).mean()
