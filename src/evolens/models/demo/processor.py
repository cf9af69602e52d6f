"""``DemoProcessor``: chat template, image placeholder expansion and pixel preprocessing, HF-processor style.

Text goes through SmolLM2's own chat template (with its default system prompt); an ``{"type": "image"}``
part becomes ``n_image_tokens`` copies of the image placeholder token, followed by a newline, as in
LLaVA-1.5. The placeholder reuses SmolLM2's special token ``<empty_output>`` (id 16): it never occurs
in chat text, and keeping an id inside the vocabulary means anything that embeds or decodes input ids
works unchanged. ``DemoVLM`` replaces the placeholder embeddings with projected image features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image
from transformers import BatchFeature

from evolens.errors import InputError
from evolens.models.demo.vision import preprocess

IMAGE_TOKEN = "<empty_output>"


class DemoProcessor:
    """Builds demo-model inputs from chats and PIL images, like a Hugging Face multimodal processor.

    Attributes:
        tokenizer: SmolLM2's tokenizer (left padding).
        n_image_tokens: placeholder tokens per image (the vision grid's cells).
        image_token: the placeholder string; ``image_token_id`` its id.
    """

    def __init__(self, tokenizer: Any, n_image_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.n_image_tokens = n_image_tokens
        self.image_token = IMAGE_TOKEN
        self.image_token_id: int = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.chat_template = tokenizer.chat_template

    def flatten_content(self, content: str | list[dict[str, Any]]) -> str:
        """A message's content parts -> one string, each image part expanded to the placeholder tokens."""
        if isinstance(content, str):
            return content
        pieces = []
        for part in content:
            if part.get("type") == "image":
                pieces.append(self.image_token * self.n_image_tokens + "\n")
            elif part.get("type") == "text":
                pieces.append(part["text"])
            else:
                raise InputError(f"unknown chat content part type '{part.get('type')}'")
        return "".join(pieces)

    def apply_chat_template(
        self,
        conversation: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        **kwargs: Any,
    ) -> Any:
        """SmolLM2's chat template on the conversation, image parts expanded; text unless ``tokenize``."""
        messages = [{"role": m["role"], "content": self.flatten_content(m["content"])} for m in conversation]
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=tokenize, **kwargs
        )

    def __call__(
        self,
        text: str | Sequence[str],
        images: Image.Image | Sequence[Image.Image] | None = None,
        padding: bool = True,
        return_tensors: str = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Tokenize chat-formatted ``text`` (left-padded) and preprocess ``images`` (one per placeholder run).

        Returns input_ids and attention_mask (B, T), and pixel_values (n_images, 3, 224, 224) when images are
        given.
        """
        texts = [text] if isinstance(text, str) else list(text)
        image_list = [images] if isinstance(images, Image.Image) else list(images or [])
        blocks = sum(t.count(self.image_token) for t in texts) // max(self.n_image_tokens, 1)
        if blocks != len(image_list):
            raise InputError(f"{blocks} image placeholders in the text but {len(image_list)} images")
        encoded = self.tokenizer(
            texts,
            padding=padding,
            padding_side="left",
            return_tensors=return_tensors,
            add_special_tokens=False,
            **kwargs,
        )
        data = dict(encoded)
        if image_list:
            data["pixel_values"] = preprocess(image_list)
        return BatchFeature(data)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)
