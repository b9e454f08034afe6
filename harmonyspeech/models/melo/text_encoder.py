"""The MeloTTS text (prior) encoder: phone, tone, language and BERT features to prior stats."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from harmonyspeech.models.melo.items import BERT_CHANNELS, JA_BERT_CHANNELS
from harmonyspeech.models.melo.layers import TransformerEncoder


class TextEncoder(nn.Module):
    """Embeds the tokens, runs the transformer and projects to the prior's mean and log-scale.

    Args:
        n_vocab: Phone symbols.
        num_tones: Tone ids.
        num_languages: Language ids.
        out_channels: Prior channels (``inter_channels``).
        hidden_channels: Model width.
        filter_channels: Feed-forward width.
        n_heads: Attention heads.
        n_layers: Transformer layers.
        kernel_size: Feed-forward taps.
        gin_channels: Speaker vector size fed to the transformer (0: none).
    """

    def __init__(
        self,
        n_vocab: int,
        num_tones: int,
        num_languages: int,
        out_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        gin_channels: int,
    ):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.emb = nn.Embedding(n_vocab, hidden_channels)
        self.tone_emb = nn.Embedding(num_tones, hidden_channels)
        self.language_emb = nn.Embedding(num_languages, hidden_channels)
        for table in (self.emb, self.tone_emb, self.language_emb):
            nn.init.normal_(table.weight, 0.0, hidden_channels**-0.5)
        self.bert_proj = nn.Conv1d(BERT_CHANNELS, hidden_channels, 1)
        self.ja_bert_proj = nn.Conv1d(JA_BERT_CHANNELS, hidden_channels, 1)
        self.encoder = TransformerEncoder(
            hidden_channels,
            filter_channels,
            n_heads,
            n_layers,
            kernel_size,
            gin_channels=gin_channels,
        )
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(
        self,
        phones: Tensor,
        tones: Tensor,
        languages: Tensor,
        bert: Tensor | None,
        ja_bert: Tensor | None,
        mask: Tensor,
        g: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Encode a padded batch.

        Args:
            phones: ``[B, T]`` symbol ids; ``tones`` and ``languages`` likewise.
            tones: ``[B, T]`` tone ids.
            languages: ``[B, T]`` language ids.
            bert: ``[B, 1024, T]`` features, or None for all zeros (only the bias then counts).
            ja_bert: ``[B, 768, T]`` features, or None for all zeros.
            mask: ``[B, 1, T]`` float mask.
            g: ``[B, gin, 1]`` speaker vectors.

        Returns:
            ``(hidden [B, H, T], prior_mean [B, C, T], prior_log_scale [B, C, T])``, masked.
        """
        x = (
            self.emb(phones)
            + self.tone_emb(tones)
            + self.language_emb(languages)
            + _project(self.bert_proj, bert)
            + _project(self.ja_bert_proj, ja_bert)
        ) * math.sqrt(self.hidden_channels)
        x = self.encoder(x.transpose(1, 2) * mask, mask, g)
        stats = self.proj(x) * mask
        mean, log_scale = torch.split(stats, self.out_channels, dim=1)
        return x, mean, log_scale


def _project(proj: nn.Conv1d, features: Tensor | None) -> Tensor:
    """``proj(features)`` as ``[B, T, H]``; for absent (all-zero) features that is the bias."""
    if features is None:
        return proj.bias.view(1, 1, -1)
    return proj(features).transpose(1, 2)
