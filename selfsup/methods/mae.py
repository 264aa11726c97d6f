"""Masked autoencoder: a ViT sees a quarter of the patches, a light decoder paints the rest."""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer

from ..backbones import Backbone
from ..utils.errors import ConfigError
from ..losses import normalized_patch_mse
from ..views import Views
from ..views.corrupt import random_token_mask
from .base import Method, Panel, Recipe, register_method


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """B x C x H x W -> B x N x (p·p·C), patches in row-major order, pixels (row, col, channel)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, p: int, c: int) -> torch.Tensor:
    """Inverse of ``patchify`` for square images."""
    b, n, _ = patches.shape
    g = int(round(n ** 0.5))
    x = patches.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, g * p, g * p)


@register_method
class MAE(Method):
    """Masked Autoencoders Are Scalable Vision Learners.

    - [0] He, Chen, Xie, Li, Dollár & Girshick, 2022, https://arxiv.org/abs/2111.06377

    The image is cut into patches, a random 75% are removed per image (``mask_ratio``), and the
    ViT encoder (torchvision's blocks; ``--backbone vit-tiny`` by default) sees only the visible
    25% with their position embeddings and the class token. A light decoder (``decoder_depth``
    blocks of width ``decoder_dim``) takes the encoded tokens, a shared learned mask token at every
    hidden position, its own position embeddings, and predicts each patch's pixels (position
    embeddings are learned here, torchvision's kind; the paper fixes both to sine-cosine); the loss is
    the mean squared error on the hidden patches only, targets normalized per patch (section 3).
    AdamW, lr 1.5e-4 x batch/256, betas (0.9, 0.95), weight decay 0.05, 5% warm-up, cosine.
    """

    name = "mae"
    family = "pretext tasks"
    paper = "He et al. 2022, Masked Autoencoders Are Scalable Vision Learners"
    minimum_images = 115_200
    recipe = Recipe(optimizer="adamw", base_lr=1.5e-4, weight_decay=0.05, warmup_fraction=0.05, views="mae",
                    adam_betas=(0.9, 0.95), backbone="vit-tiny")

    def __init__(self, backbone: Backbone, views: Views, mask_ratio: float = 0.75, decoder_dim: int = 128,
                 decoder_depth: int = 2, decoder_heads: int = 4, norm_pix_loss: bool = True) -> None:
        super().__init__(backbone, views)
        vit = backbone.model
        if not isinstance(vit, VisionTransformer):
            raise ConfigError(f"mae needs a ViT backbone (--backbone vit-tiny, vit-small or a torchvision vit_*), "
                              f"not {backbone.spec.name}")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.patch, self.mask_ratio, self.norm_pix_loss = vit.patch_size, mask_ratio, norm_pix_loss
        self.channels = backbone.spec.in_channels
        if norm_pix_loss and self.patch ** 2 * self.channels < 2:  # one value: its variance is undefined (NaN)
            raise ValueError(f"normalized-pixel targets need at least 2 values a patch, and the ViT's "
                             f"{self.patch}x{self.patch} patches of {self.channels} channel hold 1: use larger "
                             "images (--image-size) or norm_pix_loss=false")
        n = (vit.image_size // vit.patch_size) ** 2
        self.decoder_embed = nn.Linear(vit.hidden_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.empty(1, n + 1, decoder_dim).normal_(std=0.02))
        self.decoder = nn.Sequential(*[EncoderBlock(decoder_heads, decoder_dim, 4 * decoder_dim, 0.0, 0.0)
                                       for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.predict = nn.Linear(decoder_dim, self.patch ** 2 * self.channels)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def vit(self) -> VisionTransformer:
        return self.backbone.model  # not a second registration: checkpoints hold each weight once

    def encode_visible(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The encoder on the kept patches: (B x (1 + K) x D tokens, restore order B x N, K)."""
        vit = self.vit
        tokens = vit.conv_proj(x).flatten(2).transpose(1, 2)  # B x N x D
        pos = vit.encoder.pos_embedding  # 1 x (1 + N) x D, the class token's first
        tokens = tokens + pos[:, 1:]
        b, n, d = tokens.shape
        keep = max(1, int(round(n * (1 - self.mask_ratio))))
        shuffle, restore = random_token_mask(b, n, keep, generator)
        shuffle, restore = shuffle.to(x.device), restore.to(x.device)
        visible = tokens.gather(1, shuffle[:, :keep, None].expand(b, keep, d))
        cls = (vit.class_token + pos[:, :1]).expand(b, 1, d)
        encoded = vit.encoder.ln(vit.encoder.layers(vit.encoder.dropout(torch.cat([cls, visible], 1))))
        return encoded, restore, keep

    def decode(self, encoded: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Every patch's predicted pixels, B x N x (p·p·C), from the encoded visible tokens."""
        z = self.decoder_embed(encoded)  # B x (1 + K) x d
        b, n = restore.shape
        hidden = self.mask_token.expand(b, n + 1 - z.shape[1], -1)
        tokens = torch.cat([z[:, 1:], hidden], 1).gather(1, restore[..., None].expand(b, n, z.shape[-1]))  # unshuffle
        tokens = torch.cat([z[:, :1], tokens], 1) + self.decoder_pos
        return self.predict(self.decoder_norm(self.decoder(tokens)))[:, 1:]

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        (view,) = self.views(images, generator, n=1)
        encoded, restore, keep = self.encode_visible(view, generator)
        prediction = self.decode(encoded, restore)
        hidden = restore >= keep  # positions that were not among the kept
        loss = normalized_patch_mse(prediction, patchify(view, self.patch), hidden, self.norm_pix_loss)
        return {"loss": loss, "embedding": encoded[:, 0]}

    @torch.no_grad()
    def illustrate(self, images: torch.Tensor, generator: torch.Generator) -> list[Panel]:
        (view,) = self.views(images[:8], generator, n=1)
        encoded, restore, keep = self.encode_visible(view, generator)
        prediction = self.decode(encoded, restore)
        target = patchify(view, self.patch)
        hidden = (restore >= keep)[..., None]
        if self.norm_pix_loss:  # show predictions in pixel units: undo the per-patch standardization
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            prediction = prediction * (var + 1e-6) ** 0.5 + mean
        show = lambda patches: self.views.denormalize(unpatchify(patches, self.patch, self.channels)).clamp(0, 1)  # noqa: E731
        return [Panel("masked input (what the encoder sees)", show(target.masked_fill(hidden, 0.0))),
                Panel("reconstruction (hidden patches predicted)", show(torch.where(hidden, prediction, target))),
                Panel("original", show(target))]
