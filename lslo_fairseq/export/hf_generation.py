"""Decoding an exported model with Hugging Face ``generate`` exactly as ``fairseq-generate`` does (the
fairseq side, decoding a checkpoint, is :mod:`lslo_fairseq.evaluation.generation`).

``generate`` differs from fairseq's ``SequenceGenerator`` in three details, all fixed by one
logits processor, :class:`FairseqRules`, that works on the log-probabilities (beam search) or
logits (greedy) HF hands it, keeping the value of every token it lets through:

- the target language token: HF's ``forced_bos_token_id`` scores it 0, fairseq forces it as a
  prefix and counts its log-probability (it enters the length-normalised score); here it is forced
  per sentence, so one batch may mix target languages;
- padding is never generated (fairseq sets its log-probability to -inf);
- at step ``max_len`` (``--max-len-b``, default 200) fairseq forces EOS with its log-probability,
  HF would stop without one.

With ``early_stopping=True`` (a sentence is done once it has ``beam`` finished hypotheses) and
``length_penalty`` as ``--lenpen``, HF's beam search then keeps fairseq's hypotheses and scores
(sum of log-probabilities over the tokens after ``</s>``, language token and EOS included, divided by
their number). :func:`translate` returns fairseq-style hypotheses: tokens, score, positional scores.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from ..errors import LSLoError
from . import imports


class FairseqRules:
    """Force ``first_tokens[b]`` at the first step of sentence ``b`` (log-probability kept), never
    ``pad``, and EOS at step ``max_len``. ``first_tokens`` has one id per sentence of the batch; beams
    (``num_beams`` rows per sentence) are handled. A ``LogitsProcessor`` for ``generate``."""

    def __init__(self, first_tokens: Sequence[int], pad: int = 1, eos: int = 2, max_len: Optional[int] = 200,
                 prompt_len: int = 1):
        self.first = torch.as_tensor(list(first_tokens), dtype=torch.long)
        self.pad, self.eos, self.max_len, self.prompt_len = pad, eos, max_len, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        scores = scores.clone()
        scores[:, self.pad] = -float("inf")
        keep = None
        if step == 0:
            keep = self.first.to(scores.device).repeat_interleave(scores.shape[0] // len(self.first))
        elif self.max_len is not None and step >= self.max_len:
            keep = torch.full((scores.shape[0],), self.eos, dtype=torch.long, device=scores.device)
        if keep is not None:
            kept = scores.gather(1, keep[:, None])
            scores.fill_(-float("inf"))
            scores.scatter_(1, keep[:, None], kept)
        return scores


def generate_kwargs(first_tokens: Sequence[int], beam: int = 5, max_len_b: int = 200, lenpen: float = 1.0) -> Dict:
    """``generate()`` arguments that reproduce ``fairseq-generate --beam BEAM --max-len-b MAX_LEN_B
    --lenpen LENPEN`` (``beam`` 1: greedy)."""
    tf = imports.transformers()
    return dict(num_beams=beam, do_sample=False, early_stopping=True, length_penalty=lenpen,
                max_new_tokens=max_len_b + 1, suppress_tokens=None,
                logits_processor=tf.LogitsProcessorList([FairseqRules(first_tokens, max_len=max_len_b)]))


def lang_token_id(tokenizer, lang: str) -> int:
    """The id of the language token ``__lang__``: the exported fast tokenizer's special token, or
    ``M2M100Tokenizer.get_lang_id``."""
    if hasattr(tokenizer, "get_lang_id"):
        return tokenizer.get_lang_id(lang)
    token = f"__{lang}__"
    i = tokenizer.convert_tokens_to_ids(token)
    if i is None or i == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(i) != token:
        raise LSLoError(f"language '{lang}': {token} is not a token of this tokenizer (not a language of the model)")
    return i


def source_ids(tokenizer, text: str, lang: str) -> List[int]:
    """fairseq's source: ``[__lang__]`` + the text's pieces + ``[</s>]``. The exported tokenizer appends
    ``</s>`` and reads special-token strings in the text as plain text, as fairseq does; an
    ``M2M100Tokenizer`` puts its ``src_lang`` first itself."""
    if hasattr(tokenizer, "get_lang_id"):
        tokenizer.src_lang = lang
        return tokenizer(text)["input_ids"]
    return [lang_token_id(tokenizer, lang)] + tokenizer(text, split_special_tokens=True)["input_ids"]


@torch.no_grad()
def translate(model, tokenizer, sentences: Sequence[str], directions: Sequence[str], beam: int = 5,
              max_len_b: int = 200, lenpen: float = 1.0, adapters: bool = False) -> List[Dict]:
    """Translate ``sentences[i]`` in direction ``directions[i]`` (``src-tgt``) in one batch, as
    fairseq-generate would: [{tokens (ids, EOS included), pieces, text, score, positional}].
    ``adapters``: pass ``adapter_names=directions`` (a PEFT model with one adapter per direction)."""
    pairs = [d.split("-") for d in directions]
    ids = [source_ids(tokenizer, text, s) for text, (s, _) in zip(sentences, pairs)]
    width = max(map(len, ids))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    first = [lang_token_id(tokenizer, t) for _, t in pairs]
    kwargs = generate_kwargs(first, beam, max_len_b, lenpen)
    if adapters:
        kwargs["adapter_names"] = list(directions)
    out = model.generate(input_ids=input_ids, attention_mask=mask, return_dict_in_generate=True,
                         output_logits=True, output_scores=True, **kwargs)
    seqs = out.sequences[:, 1:]  # without the decoder start </s>
    if beam == 1:  # greedy: log-softmax of the raw logits at the chosen tokens
        logits = torch.stack(out.logits, 1).float()
        token_lp = torch.log_softmax(logits, -1).gather(2, seqs[:, :, None]).squeeze(2)
    else:  # beam: the processed log-probabilities of each step, gathered along the beam
        token_lp = beam_token_scores(out, seqs)
    results = []
    for b in range(seqs.shape[0]):
        row = seqs[b].tolist()
        n = row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
        positional = [float(x) for x in token_lp[b, :n]]
        pieces = tokenizer.convert_ids_to_tokens(row[1:n - 1] if row[n - 1] == tokenizer.eos_token_id else row[1:n])
        results.append(dict(tokens=row[:n], pieces=" ".join(pieces), text=tokenizer.decode(row[1:n], skip_special_tokens=True),
                            score=sum(positional) / (n ** lenpen), positional=positional,
                            hf_score=float(out.sequences_scores[b]) if beam > 1 else None))
    return results


def beam_token_scores(out, seqs) -> torch.Tensor:
    """Per-token log-probabilities of beam search's chosen hypotheses (from ``out.scores`` and
    ``out.beam_indices``)."""
    steps = seqs.shape[1]
    scores = torch.stack(out.scores, 0)  # (steps, batch*beam, V)
    idx = out.beam_indices[:, :steps]  # (batch, steps), -1 after the end
    result = torch.zeros(seqs.shape, dtype=torch.float32)
    for t in range(min(steps, scores.shape[0])):
        rows = idx[:, t].clamp(min=0)
        result[:, t] = scores[t, rows, seqs[:, t]].float()
    return result.masked_fill(idx[:, :steps] < 0, 0.0)
