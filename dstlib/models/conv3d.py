"""A small 3D segmentation network after E2ENet (Wu et al., "E2ENet: Dynamic Sparse Feature Fusion for
Accurate and Efficient 3D Medical Image Segmentation", NeurIPS 2024; official ``unetpp_d.py``).

- ``DepthShift``: E2ENet's restricted depth shift. Channels are split into ``groups`` chunks and chunk g is
  moved along depth by ``g - groups // 2`` slices with zero fill (paper: 3 groups, shifts -1/0/+1; the
  released code uses 5). No parameters, no FLOPs: the (1, 3, 3) conv after it mixes shifted channels, so
  the block sees 3 slices in depth at the cost of a 2D conv.
- ``E2ENet``: an encoder of (1, 3, 3) shift-conv blocks (InstanceNorm + LeakyReLU, strided first conv per
  level) and a multi-scale fusion decoder: a grid of nodes x[i, j] (level i, stage j, i + j < levels);
  each node fuses, by channel concatenation and one shift-conv block, the same-level node of the previous
  stage, the transposed-conv upsampling of the next-deeper one and (i > 0) the max-pooling of the
  shallower one, i.e. only adjacent scales, as in E2ENet. 1x1x1 heads on the last node of each level give
  the deep-supervision outputs.

Parameter names (what a sparse engine selects):
    ``fusion.nodes.x{i}_{j}.conv.weight`` (fusion convs, ``(C_out, C_in, 1, 3, 3)``) and
    ``fusion.ups.x{i}_{j}.weight`` (transposed-conv upsamplers, ``(C_in, C_out, *pool)``): the tensors
    E2ENet's DSFF sparsifies at kernel level, i.e. pattern ``fusion.*`` minus biases and norms;
    ``encoder.{i}.{0,1}.conv.weight`` (dense in E2ENet); ``heads.{i}.weight`` (dense);
    ``*.norm.*`` and ``*.conv.bias`` are 1-D.
"""

import torch
import torch.nn.functional as F
from torch import nn

from dstlib import checks

CONV_MODES = ("shift", "2d", "3d")


def shift_depth(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``out[:, :, d] = x[:, :, d - shift]`` for ``(B, C, D, H, W)``, zero where ``d - shift`` is outside."""
    depth = x.shape[2]
    if shift == 0:
        return x
    if abs(shift) >= depth:
        return torch.zeros_like(x)
    if shift > 0:
        return F.pad(x[:, :, : depth - shift], (0, 0, 0, 0, shift, 0))
    return F.pad(x[:, :, -shift:], (0, 0, 0, 0, 0, -shift))


class DepthShift(nn.Module):
    """E2ENet's restricted depth shift: ``(B, C, D, H, W) -> (B, C, D, H, W)``, C >= ``groups``.

    Channels are split into ``groups`` contiguous chunks (``torch.tensor_split``: equal when ``groups``
    divides C, otherwise the first chunks are one channel larger); chunk g is shifted along depth by
    ``shifts[g] = g - groups // 2`` slices, ``out[:, c, d] = x[:, c, d - shifts[g]]``, with zero fill.
    """

    def __init__(self, groups: int = 3) -> None:
        super().__init__()
        checks.require(checks.is_odd_int(groups), "groups", groups, "an odd integer >= 1")
        self.groups = groups
        self.shifts = [g - groups // 2 for g in range(groups)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ok = x.dim() == 5 and x.shape[1] >= self.groups
        checks.require(ok, "x.shape", tuple(x.shape), f"(B, C, D, H, W) with C >= groups ({self.groups})")
        chunks = torch.tensor_split(x, self.groups, dim=1)
        return torch.cat([shift_depth(c, s) for c, s in zip(chunks, self.shifts, strict=True)], dim=1)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, shifts={self.shifts}"


class ShiftConvBlock(nn.Module):
    """[DepthShift] -> Conv3d -> InstanceNorm3d(affine) -> LeakyReLU(0.01), E2ENet's basic block.

    ``(B, C_in, D, H, W) -> (B, C_out, D/s_d, H/s_h, W/s_w)`` for stride ``s``. ``conv_mode``:
    ``"shift"`` = depth shift + (1, 3, 3) conv (E2ENet; the shift is skipped when C_in < ``shift_groups``,
    e.g. on a 1-channel input, where the released code would shift the whole input by one slice),
    ``"2d"`` = (1, 3, 3) conv without shift, ``"3d"`` = full (3, 3, 3) conv (the ablation baselines).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: tuple[int, int, int] = (1, 1, 1),
        conv_mode: str = "shift",
        shift_groups: int = 3,
    ) -> None:
        super().__init__()
        checks.one_of("conv_mode", conv_mode, CONV_MODES)
        use_shift = conv_mode == "shift" and in_channels >= shift_groups
        self.shift = DepthShift(shift_groups) if use_shift else nn.Identity()
        kernel, padding = ((3, 3, 3), (1, 1, 1)) if conv_mode == "3d" else ((1, 3, 3), (0, 1, 1))
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, padding)
        self.norm = nn.InstanceNorm3d(out_channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.conv(self.shift(x))), 0.01)


class FusionDecoder(nn.Module):
    """E2ENet's multi-scale feature-fusion grid over encoder features of ``len(channels)`` levels.

    Input: list of encoder features, level i of shape ``(B, channels[i], D_i, H_i, W_i)`` (level i + 1 is
    level i pooled by ``pool``). Output: list of the last node of every level, ``x[i, levels - 1 - i]``,
    same shapes as the inputs. Node ``x[i, j]`` (j >= 1, i + j < levels) =
    ``nodes["x{i}_{j}"](cat(x[i, j-1], ups["x{i}_{j}"](x[i+1, j-1]), maxpool(x[i-1, j-1]) if i > 0))``.
    """

    def __init__(
        self, channels: list[int], pool: tuple[int, int, int], conv_mode: str, shift_groups: int
    ) -> None:
        super().__init__()
        self.levels = len(channels)
        self.channels = list(channels)
        self.nodes = nn.ModuleDict()
        self.ups = nn.ModuleDict()
        for j in range(1, self.levels):
            for i in range(self.levels - j):
                key = f"x{i}_{j}"
                self.ups[key] = nn.ConvTranspose3d(channels[i + 1], channels[i], pool, pool, bias=False)
                fused = 2 * channels[i] + (channels[i - 1] if i > 0 else 0)
                self.nodes[key] = ShiftConvBlock(
                    fused, channels[i], conv_mode=conv_mode, shift_groups=shift_groups
                )
        self.down = nn.MaxPool3d(pool)

    def input_flows(self, level: int, stage: int) -> dict[str, slice]:
        """The input channels of node ``x[level, stage]``'s fusion conv by flow: ``"forward"`` (same level,
        previous stage), ``"upward"`` (upsampled from the deeper level), ``"downward"`` (pooled from the
        shallower level; absent at level 0)."""
        ok = stage >= 1 and 0 <= level < self.levels - stage
        checks.require(ok, "(level, stage)", (level, stage),
                       f"a fusion node: stage >= 1, level + stage < {self.levels}")
        width = self.channels[level]
        flows = {"forward": slice(0, width), "upward": slice(width, 2 * width)}
        if level > 0:
            flows["downward"] = slice(2 * width, 2 * width + self.channels[level - 1])
        return flows

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        grid = {(i, 0): feature for i, feature in enumerate(features)}
        for j in range(1, self.levels):
            for i in range(self.levels - j):
                key = f"x{i}_{j}"
                parts = [grid[i, j - 1], self.ups[key](grid[i + 1, j - 1])]
                if i > 0:
                    parts.append(self.down(grid[i - 1, j - 1]))
                grid[i, j] = self.nodes[key](torch.cat(parts, dim=1))
        return [grid[i, self.levels - 1 - i] for i in range(self.levels)]


class E2ENet(nn.Module):
    """Small E2ENet: shift-conv encoder + dynamic-sparse-fusion decoder for 3D segmentation.

    Input ``(B, in_channels, D, H, W)`` with D, H, W divisible by ``pool ** (levels - 1)`` per axis;
    ``forward`` returns logits ``(B, num_classes, D, H, W)``; ``forward_all_scales`` returns the
    deep-supervision logits of levels 0 .. levels - 2, level i of shape ``(B, num_classes, D/p^i, ...)``.

    Args:
        num_classes: segmentation classes (background included).
        in_channels: image channels (modalities).
        base_channels: channels of level 0, doubled per level up to ``max_channels`` (E2ENet: 48 and 320).
        levels: encoder levels (E2ENet: 6 from the nnU-Net plans).
        max_channels: channel cap.
        pool: downsampling factor per axis between levels (strided first conv of each level).
        conv_mode: ``"shift"`` (E2ENet), ``"2d"`` (no shift) or ``"3d"`` (3x3x3 convs); see
            ``ShiftConvBlock``.
        shift_groups: ``DepthShift`` groups (paper 3, released code 5).
        deep_supervision: in training mode ``forward`` returns ``forward_all_scales`` (the list of heads,
            full resolution first), as nnU-Net does; in eval mode always the full-resolution logits.

    Defaults are the CPU tutorial scale (4 levels, 8-16-32-64 channels, about 140k parameters).
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 1,
        base_channels: int = 8,
        levels: int = 4,
        max_channels: int = 320,
        pool: tuple[int, int, int] = (2, 2, 2),
        conv_mode: str = "shift",
        shift_groups: int = 3,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        checks.positive_ints(
            num_classes=num_classes,
            in_channels=in_channels,
            base_channels=base_channels,
            max_channels=max_channels,
        )
        checks.integer("levels", levels, low=2)
        checks.numbers("pool", pool, length=3, low=1, integer=True)
        checks.one_of("conv_mode", conv_mode, CONV_MODES)
        checks.require(checks.is_odd_int(shift_groups), "shift_groups", shift_groups, "an odd integer >= 1")
        self.pool = tuple(pool)
        self.levels = levels
        self.deep_supervision = deep_supervision
        channels = [min(base_channels * 2**i, max_channels) for i in range(levels)]
        encoder = []
        previous = in_channels
        for i, width in enumerate(channels):
            stride = (1, 1, 1) if i == 0 else self.pool
            encoder.append(
                nn.Sequential(
                    ShiftConvBlock(previous, width, stride, conv_mode, shift_groups),
                    ShiftConvBlock(width, width, (1, 1, 1), conv_mode, shift_groups),
                )
            )
            previous = width
        self.encoder = nn.ModuleList(encoder)
        self.fusion = FusionDecoder(channels, self.pool, conv_mode, shift_groups)
        self.heads = nn.ModuleList(
            nn.Conv3d(channels[i], num_classes, 1, bias=False) for i in range(levels - 1)
        )

    def _fused_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        factors = [p ** (self.levels - 1) for p in self.pool]
        ok = x.dim() == 5 and not any(size % f for size, f in zip(x.shape[2:], factors, strict=True))
        checks.require(ok, "x.shape", tuple(x.shape), f"(B, C, D, H, W) with D, H, W divisible by {factors}")
        features = []
        for level in self.encoder:
            x = level(x)
            features.append(x)
        return self.fusion(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``(B, in_channels, D, H, W)`` -> logits ``(B, num_classes, D, H, W)`` (in training mode with
        ``deep_supervision``: the list of :meth:`forward_all_scales`)."""
        if self.deep_supervision and self.training:
            return self.forward_all_scales(x)
        return self.heads[0](self._fused_features(x)[0])

    def forward_all_scales(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Deep-supervision logits, full resolution first: level i is ``(B, num_classes, D/p^i, ...)``."""
        fused = self._fused_features(x)
        return [head(feature) for head, feature in zip(self.heads, fused[:-1], strict=True)]
