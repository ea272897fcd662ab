"""One standard PEFT LoRA adapter per direction of an LSLo checkpoint, for the HF base that
``lslo-export hf`` writes from the same checkpoint.

Each direction's adapter holds, for every LSLo layer, the (B, A) of :func:`.lora.direction_lora`
(masks, slices, scales and weight-learning weights folded in) under HF's module name
(``model.`` + fairseq's path: M2M100 keeps fairseq's layer names). Ranks differ per module (weight
learning and a modular checkpoint's ``outputs`` merge stack two languages), so ``rank_pattern`` gives each module its rank and ``alpha_pattern``
the same value: PEFT's scale alpha / r is 1, as the factors already carry every scale.

A modular checkpoint (``--lslo-modular``) is merged per direction as at generation: ``merge`` and
``merge_weights`` are ``--lslo-merge`` and ``--lslo-merge-weights`` (W_IN,W_OUT or lslo-score
--merge-search's JSON; :func:`..merging.apply_merge`), the pivot's directions use their one adapter;
both are refused for other checkpoints, and every direction is checked before anything is written.

Serving several directions in one batch::

    model = PeftModel.from_pretrained(base, "peft/fr-oc", adapter_name="fr-oc")
    model.load_adapter("peft/oc-en", adapter_name="oc-en")
    model.generate(**batch, adapter_names=["fr-oc", "oc-en", ...])
"""
from __future__ import annotations

import os
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

from ..checkpoints.reading import CheckpointError
from ..config import as_list
from ..files import publish_files
from ..runfiles import export_info
from ..merging import apply_merge
from . import imports
from .lora import direction_lora
from .source import Source, load_lslo_model

WEIGHTS_NAME = "adapter_model.safetensors"


def parse_directions(text: str, src: Source) -> List[Tuple[str, str]]:
    """``fr-oc,oc-en`` -> [(fr, oc), (oc, en)]; every language must have adapters."""
    langs = as_list(src.model_opts.get("lslo_langs") or [])
    out = []
    for item in [x.strip() for x in text.split(",") if x.strip()]:
        parts = item.split("-")
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise CheckpointError(f"--directions: '{item}' is not a direction SRC-TGT (e.g. fr-oc)")
        for lang in parts:
            if lang not in langs:
                raise CheckpointError(f"--directions: '{item}': '{lang}' has no adapters in this checkpoint "
                                      f"(its LSLo languages: {', '.join(langs)})")
        if tuple(parts) not in out:
            out.append(tuple(parts))
    if not out:
        raise CheckpointError("--directions: give at least one direction SRC-TGT (e.g. fr-oc,oc-en)")
    return out


def hf_module(path: str) -> str:
    """fairseq module path -> the module's name in M2M100ForConditionalGeneration."""
    return "model." + path


def adapter_files(model, s: str, t: str, base_model: Optional[str]):
    """(LoraConfig, state dict) of the direction s -> t."""
    peft = imports.peft()
    tensors, ranks = {}, {}
    for path, (b, a) in direction_lora(model, s, t).items():
        name = hf_module(path)
        ranks[name] = a.shape[0]
        tensors[f"base_model.model.{name}.lora_A.weight"] = a.float().contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = b.float().contiguous()
    top = max(ranks.values())
    config = peft.LoraConfig(
        r=top, lora_alpha=top, target_modules=sorted(ranks), lora_dropout=0.0, bias="none",
        task_type="SEQ_2_SEQ_LM", inference_mode=True, base_model_name_or_path=base_model,
        rank_pattern={k: r for k, r in ranks.items() if r != top}, alpha_pattern={k: r for k, r in ranks.items() if r != top},
    )
    return config, tensors


def export_peft(src: Source, directions: Sequence[Tuple[str, str]], out: str, base_model: Optional[str] = None,
                merge: str = "outputs", merge_weights: Optional[str] = None) -> Dict:
    """Write ``out/<src>-<tgt>/`` (adapter_config.json, adapter_model.safetensors) per direction; a
    modular checkpoint's adapters merged by ``merge`` with ``merge_weights`` (checked for every
    direction first)."""
    from safetensors.torch import save_file

    imports.peft()
    model = load_lslo_model(src)
    cfg = model.lslo_config
    for s, t in directions:  # refusals (other checkpoints, ab with unequal ranks) before any file
        apply_merge(model, merge, merge_weights, s, t)
    written, merged = {}, {}
    for s, t in directions:
        apply_merge(model, merge, merge_weights, s, t)
        if cfg.modular:
            merged[f"{s}-{t}"] = model.lslo_router.direction_record(cfg.languages.index(s), cfg.languages.index(t))
        config, tensors = adapter_files(model, s, t, base_model)
        folder = os.path.join(out, f"{s}-{t}")
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".lslo-peft-", dir=folder) as tmp:
            config.save_pretrained(tmp)
            save_file(tensors, os.path.join(tmp, WEIGHTS_NAME), metadata={"format": "pt"})
            publish_files(tmp, folder)
        written[f"{s}-{t}"] = dict(modules=len(tensors) // 2, ranks=sorted({int(v.shape[0]) for k, v in tensors.items()
                                                                              if k.endswith("lora_A.weight")}))
        if cfg.modular:
            written[f"{s}-{t}"]["merge_weights"] = merged[f"{s}-{t}"]
    info = {"from_checkpoint": os.path.abspath(src.path), "base_model": base_model, "adapters": written}
    if cfg.modular:
        info["merge"] = {"mode": merge, "spec": merge_weights, "pivot": cfg.pivot,
                         "note": "(w_in, w_out) per direction (per encoder and decoder layer when the weights are per layer); "
                                 "the pivot's directions use their one adapter"}
    export_info.write(out, "peft", info)
    return written
