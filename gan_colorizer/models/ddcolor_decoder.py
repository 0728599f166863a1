"""DDColor's colour decoder: a transformer whose 100 learned colour queries attend, in turn, to the pixel decoder's
features at 1/16, 1/8 and 1/4 of the input; each query then becomes a 256-channel colour embedding, and its dot
product with the full-size image features gives one map per query (the "colour" channels the refine layer mixes).

The attribute names and the registration order are those of the authors' MultiScaleColorDecoder (piddnad/DDColor,
basicsr/archs/ddcolor_arch.py), which wrote the published files; the layers are Mask2Former's post-norm ones.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN = 256  # the queries' and the attention's width
HEADS = 8
FEEDFORWARD = 2048


def sine_positions(height: int, width: int, device, channels: int = HIDDEN) -> torch.Tensor:
    """DETR's normalised sine encoding of a height x width grid, as (height * width, 1, channels): rows and columns
    numbered from 1, scaled to (0, 2 pi], each through sin / cos pairs of geometric wavelengths (rows first)."""
    half = channels // 2
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device).view(height, 1).expand(height, width)
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device).view(1, width).expand(height, width)
    rows = rows / (height + 1e-6) * (2 * math.pi)  # the authors' order of operations, so the floats agree
    cols = cols / (width + 1e-6) * (2 * math.pi)
    index = torch.arange(half, dtype=torch.float32, device=device)
    wavelengths = 10000 ** (2 * (index // 2) / half)

    def pairs(angle: torch.Tensor) -> torch.Tensor:
        phase = angle[:, :, None] / wavelengths
        return torch.stack((phase[:, :, 0::2].sin(), phase[:, :, 1::2].cos()), dim=3).flatten(2)

    return torch.cat((pairs(rows), pairs(cols)), dim=2).reshape(height * width, 1, channels)


class SelfAttentionLayer(nn.Module):
    """The queries attend to each other (their positions added to queries and keys), then a residual LayerNorm."""

    def __init__(self):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(HIDDEN, HEADS)
        self.norm = nn.LayerNorm(HIDDEN)

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = k = queries + query_pos
        return self.norm(queries + self.self_attn(q, k, value=queries, need_weights=False)[0])


class CrossAttentionLayer(nn.Module):
    """The queries attend to one scale's pixels (both with their positions), then a residual LayerNorm."""

    def __init__(self):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(HIDDEN, HEADS)
        self.norm = nn.LayerNorm(HIDDEN)

    def forward(self, queries: torch.Tensor, pixels: torch.Tensor, pos: torch.Tensor,
                query_pos: torch.Tensor) -> torch.Tensor:
        attended = self.multihead_attn(queries + query_pos, pixels + pos, value=pixels, need_weights=False)[0]
        return self.norm(queries + attended)


class FFNLayer(nn.Module):
    """Per-query MLP (256 -> 2048 -> 256, ReLU), then a residual LayerNorm."""

    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(HIDDEN, FEEDFORWARD)
        self.linear2 = nn.Linear(FEEDFORWARD, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        return self.norm(queries + self.linear2(F.relu(self.linear1(queries))))


class MLP(nn.Module):
    """Three linear layers with ReLUs between: a query's decoded state -> its colour embedding."""

    def __init__(self, depth: int = 3):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(HIDDEN, HIDDEN) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class ColorDecoder(nn.Module):
    """Colour queries refined over `depth` rounds (cross-attention to one scale, self-attention, MLP), the scales
    taken in turn coarse to fine; returns (N, queries, H, W): each query's embedding against every pixel's
    features."""

    def __init__(self, scale_channels: tuple[int, ...] = (512, 512, 256), queries: int = 100, depth: int = 9):
        super().__init__()
        self.transformer_self_attention_layers = nn.ModuleList(SelfAttentionLayer() for _ in range(depth))
        self.transformer_cross_attention_layers = nn.ModuleList(CrossAttentionLayer() for _ in range(depth))
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer() for _ in range(depth))
        self.decoder_norm = nn.LayerNorm(HIDDEN)
        self.query_feat = nn.Embedding(queries, HIDDEN)  # the queries' starting content
        self.query_embed = nn.Embedding(queries, HIDDEN)  # their positions, added at every attention
        self.level_embed = nn.Embedding(len(scale_channels), HIDDEN)  # which scale a pixel comes from
        self.input_proj = nn.ModuleList(nn.Conv2d(c, HIDDEN, 1) for c in scale_channels)
        self.color_embed = MLP()

    def forward(self, scales: list[torch.Tensor], image_features: torch.Tensor) -> torch.Tensor:
        pixels, positions = [], []
        for i, feature in enumerate(scales):  # each scale as a sequence (H * W, N, 256)
            projected = self.input_proj[i](feature).flatten(2) + self.level_embed.weight[i][None, :, None]
            pixels.append(projected.permute(2, 0, 1))
            positions.append(sine_positions(*feature.shape[-2:], feature.device))
        batch = image_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, batch, 1)
        queries = self.query_feat.weight.unsqueeze(1).repeat(1, batch, 1)
        for i, (cross, attend, ffn) in enumerate(zip(self.transformer_cross_attention_layers,
                                                      self.transformer_self_attention_layers,
                                                      self.transformer_ffn_layers)):
            level = i % len(scales)
            queries = cross(queries, pixels[level], positions[level], query_pos)
            queries = ffn(attend(queries, query_pos))
        colors = self.color_embed(self.decoder_norm(queries).transpose(0, 1))  # (N, queries, 256)
        return torch.einsum("bqc,bchw->bqhw", colors, image_features)
