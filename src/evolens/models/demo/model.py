"""``DemoVLM``: frozen EfficientNet-Lite0 -> trained MLP projector -> frozen SmolLM2-135M-Instruct.

LLaVA-1.5 style: image tokens are projected into the decoder's embedding space and written over the
image placeholder tokens of the prompt. The decoder keeps Hugging Face's layout (``decoder.model.layers``,
``decoder.model.norm``, ``decoder.lm_head``), so the generic adapter machinery reaches its parts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from evolens.errors import InputError
from evolens.models.demo.vision import VisionEncoder


class Projector(nn.Module):
    """LLaVA-1.5's projector: Linear -> GELU -> Linear, (..., feature_dim) -> (..., d_model)."""

    def __init__(self, feature_dim: int, d_model: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.GELU(), nn.Linear(hidden, d_model))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class DemoVLM(nn.Module):
    """The demo vision-language model.

    Attributes:
        vision: frozen encoder, pixel_values (n_images, 3, 224, 224) -> (n_images, N, feature_dim).
        projector: the only trained part, (n_images, N, feature_dim) -> (n_images, N, d_model).
        decoder: the frozen ``LlamaForCausalLM``.
        image_token_id: the placeholder id whose embeddings are replaced by image tokens.
        config / generation_config: the decoder's.
    """

    def __init__(
        self, vision: VisionEncoder, projector: Projector, decoder: PreTrainedModel, image_token_id: int
    ) -> None:
        super().__init__()
        self.vision = vision
        self.projector = projector
        self.decoder: Any = decoder  # a transformers LlamaForCausalLM (its API is not nn.Module's)
        self.image_token_id = image_token_id
        self.config = decoder.config
        self.generation_config = decoder.generation_config

    @property
    def device(self) -> torch.device:
        return self.decoder.device

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (n_images, 3, 224, 224) -> projected image tokens (n_images, N, d_model)."""
        features = self.vision(pixel_values.to(self.device))
        return self.project(features)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Vision features (n_images, N, feature_dim) -> image tokens in the decoder's dtype."""
        weight_dtype = next(self.projector.parameters()).dtype
        return self.projector(features.to(weight_dtype)).to(self.decoder.dtype)

    def embed(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings (B, T, d_model) with the placeholders of image i (in row order) replaced by
        image i's tokens; ``image_features`` (n_images, N, feature_dim) may stand in for pixel_values."""
        embeds = self.decoder.get_input_embeddings()(input_ids)
        if pixel_values is None and image_features is None:
            return embeds
        if image_features is not None:
            images = self.project(image_features)
        else:
            assert pixel_values is not None
            images = self.image_embeddings(pixel_values)
        mask = input_ids == self.image_token_id
        if int(mask.sum()) != images.shape[0] * images.shape[1]:
            raise InputError(
                f"{int(mask.sum())} image placeholder tokens for {images.shape[0]} images of "
                f"{images.shape[1]} tokens each; build inputs with the demo processor"
            )
        return embeds.masked_scatter(mask.unsqueeze(-1), images.reshape(-1, images.shape[-1]))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """The decoder's output (``.logits`` (B, T, V)) for a left-padded batch, with or without images.

        Position ids follow the attention mask, so a padded row gives the same numbers as alone.
        """
        if inputs_embeds is None:
            if input_ids is None:
                raise InputError("DemoVLM.forward needs input_ids or inputs_embeds")
            inputs_embeds = self.embed(input_ids, pixel_values)
        if position_ids is None and attention_mask is not None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.decoder(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, **kwargs
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> Any:
        """``decoder.generate`` on the spliced embeddings; returns prompt ids + new ids like HF VLMs.

        Every other keyword (streamer, logits_processor, stopping_criteria, sampling settings,
        output_scores, return_dict_in_generate, ...) goes to the decoder's ``generate`` unchanged.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = self.embed(input_ids, pixel_values)
        return self.decoder.generate(
            input_ids=input_ids, inputs_embeds=embeds, attention_mask=attention_mask, **generate_kwargs
        )
