"""Any Hugging Face ``transformers`` architecture as a selfsup text encoder (optional: ``pip install
selfsup[hf]``). Wolf et al. 2020, "Transformers: State-of-the-Art Natural Language Processing",
https://arxiv.org/abs/1910.03771.

``--backbone hf:SOURCE[:key=value,...]`` where SOURCE is a model type (``bert``, ``roberta``,
``gpt2``, ``albert``, ...: that type's default config) or a local ``config.json`` (or a folder
holding one), and the overrides size it, e.g.
``hf:bert:hidden_size=256,num_hidden_layers=4,num_attention_heads=4,intermediate_size=1024``.
The encoder is built from the config with fresh weights (``AutoModel.from_config``: nothing is
downloaded), its vocabulary and positions sized to the corpus's tokenizer, dropout off as for
selfsup's own Transformer (resumed runs replay exactly). The whole resolved config is saved in
``encoder.json``, so a checkpoint rebuilds without the original file. Features are the mean of the
last hidden states over real tokens. Whether the model is causal (GPT-2) or bidirectional (BERT) is
measured, not assumed: ``next_token`` needs a causal one (``hf:bert:is_decoder=true`` makes BERT
causal), ``mlm`` and ``sentence_order`` a bidirectional one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from ..data.text import CLS, FIRST_WORD, PAD, SEP
from ..utils.errors import ConfigError
from .pooling import masked_mean

HF_PREFIX = "hf:"


def is_hf_backbone(name: str | None) -> bool:
    return bool(name) and str(name).startswith(HF_PREFIX)


def _transformers(name: str):
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"--backbone {name} needs Hugging Face transformers: pip install 'selfsup[hf]'") from None
    return transformers


def _overrides(name: str, text: str) -> dict[str, Any]:
    values = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--backbone {name}: override {item!r} is not key=value")
        values[key.strip()] = yaml.safe_load(value)  # 256 -> int, true -> bool, gelu -> str
    return values


def hf_config(name: str, vocab_size: int, max_length: int) -> dict[str, Any]:
    """The full, JSON-ready config of ``--backbone name`` for this tokenizer's vocabulary and lengths."""
    transformers = _transformers(name)
    source, _, overrides = name[len(HF_PREFIX):].partition(":")
    if not source:
        raise ConfigError(f"--backbone {name}: give a model type or a config.json after 'hf:' (e.g. hf:bert)")
    path = Path(source)
    try:
        if path.suffix == ".json" or path.is_dir():
            if not path.exists():
                raise ConfigError(f"--backbone {name}: {path} does not exist")
            config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        else:
            config = transformers.AutoConfig.for_model(source)
    except ConfigError:
        raise
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(f"--backbone {name}: {str(exc).splitlines()[0].split('. Should contain')[0]}") from None
    for key, value in _overrides(name, overrides).items():
        if not hasattr(config, key):
            raise ConfigError(f"--backbone {name}: {type(config).__name__} has no setting {key!r}")
        setattr(config, key, value)
    config.vocab_size, config.pad_token_id = vocab_size, PAD
    for key, token in (("bos_token_id", CLS), ("eos_token_id", SEP), ("sep_token_id", SEP), ("cls_token_id", CLS)):
        if isinstance(getattr(config, key, None), int):  # the type's ids belong to its own vocabulary, not ours
            setattr(config, key, token)
    for key in ("max_position_embeddings", "n_positions"):  # room for the longest text
        if isinstance(getattr(config, key, None), int) and getattr(config, key) < max_length:
            setattr(config, key, max_length)
    for key, value in config.to_dict().items():  # dropout off (see the module docstring)
        if isinstance(value, float) and ("dropout" in key or "pdrop" in key):
            setattr(config, key, 0.0)
    return json.loads(config.to_json_string(use_diff=False))


class HFTextEncoder(nn.Module):
    """A ``transformers`` base model behind selfsup's text-encoder interface: ``tokens`` (the input
    embedding), ``sequence(ids, causal)`` (B x L x D states), ``forward`` (mean over real tokens)."""

    def __init__(self, config: dict[str, Any], name: str = "hf") -> None:
        super().__init__()
        transformers = _transformers(name)
        settings = transformers.CONFIG_MAPPING[config["model_type"]].from_dict(dict(config))
        try:
            self.model = transformers.AutoModel.from_config(settings)
        except ValueError as exc:
            raise ConfigError(f"--backbone {name}: {str(exc).splitlines()[0]}") from None
        self.width = int(settings.hidden_size)
        self.name = name
        self.causal = self._measure_causal()

    @property
    def tokens(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    @torch.no_grad()
    def _measure_causal(self) -> bool:
        """True when changing the last token leaves the first position's state unchanged."""
        ids = torch.tensor([[FIRST_WORD, FIRST_WORD + 1, FIRST_WORD + 2], [FIRST_WORD, FIRST_WORD + 1, FIRST_WORD + 3]])
        was_training = self.model.training
        self.model.eval()
        try:
            states = self._states(ids)
        except Exception as exc:  # e.g. an encoder-decoder that needs decoder inputs
            raise ConfigError(f"--backbone {self.name}: this model cannot encode token ids alone "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        finally:
            self.model.train(was_training)
        return bool(torch.allclose(states[0, 0], states[1, 0], atol=1e-5))

    def _states(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids.long(), attention_mask=(ids != PAD).long())
        return out.last_hidden_state

    def sequence(self, ids: torch.Tensor, causal: bool = False) -> torch.Tensor:
        if causal != self.causal:
            need = "a causal model (gpt2, or hf:bert:is_decoder=true)" if causal else "a bidirectional model (bert, roberta, ...)"
            raise ConfigError(f"--backbone {self.name}: this task needs {need}")
        return self._states(ids)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return masked_mean(self._states(ids), ids.long() != PAD)


__all__ = ["HF_PREFIX", "HFTextEncoder", "hf_config", "is_hf_backbone"]
