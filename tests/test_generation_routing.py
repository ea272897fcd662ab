"""Beam search routes every sentence exactly as teacher forcing does: the beam-5 score of each
token of a hypothesis equals the teacher-forced log-probability of that token, for every index
strategy and module set, in batches that mix source and target languages (so that beam search's
reordering and finishing of sentences must carry the language ids along)."""
import contextlib

import pytest
import torch
from fairseq import options, tasks

from helpers import TINY_ARCH_ARGS, USER_DIR, lslo_task_args
from model_utils import randomize_adapters

pytestmark = pytest.mark.slow  # every test loads the fairseq-trained tiny_base_checkpoint


def build(data, base_ckpt, enc, dec, modules, src, tgt):
    args = lslo_task_args(data)
    parser = options.get_training_parser()
    ns = options.parse_args_and_arch(parser, [
        *args, "--user-dir", USER_DIR, "--arch", "lslo_transformer", *TINY_ARCH_ARGS,
        "--lslo-ranks", "en:2,fr:3,ko:2,oc:5", "--lslo-encoder-index", enc, "--lslo-decoder-index", dec,
        "--lslo-modules", modules, "--source-lang", src, "--target-lang", tgt, "--cpu",
        "--dropout", "0", "--attention-dropout", "0"])
    task = tasks.setup_task(ns)
    model = task.build_model(ns)
    model.load_state_dict(torch.load(base_ckpt, map_location="cpu")["model"])
    randomize_adapters(model, scale=0.3)
    model.eval()
    task.load_dataset("test")
    return task, model, ns


def batch(task, n=6):
    ds = task.dataset("test")
    return ds.collater([ds[i] for i in range(n)])


def teacher_forced_scores(model, src_tokens, hyp_tokens, eos):
    prev = torch.cat([torch.tensor([eos]), hyp_tokens[:-1]]).unsqueeze(0)
    logits, _ = model(src_tokens.unsqueeze(0), torch.tensor([src_tokens.numel()]), prev)
    lprobs = torch.log_softmax(logits.float(), dim=-1)[0]
    return lprobs.gather(1, hyp_tokens.unsqueeze(1)).squeeze(1)


STRATEGIES = [("src", "tgt", "all"), ("tgt", "src", "all"), ("src,tgt", "tgt,src", "attn"),
              ("tgt,src", "src,tgt", "fc"), ("src", "tgt", "c-k,c-v,q")]


def mixed_beam_search(data, base_ckpt, enc, dec, modules):
    """Beam 5 (nbest 2) over one batch mixing three directions; returns the task, the model, its
    hypotheses and the batch's sources, their pad and target language tokens. Seeded: the same model
    every call."""
    torch.manual_seed(0)
    pad = None
    samples, langs = [], [("en", "fr"), ("oc", "ko"), ("ko", "en")]
    for src, tgt in langs:
        task, model, ns = build(data, base_ckpt, enc, dec, modules, src, tgt)
        s = batch(task)
        tok = task.data_manager.get_decoder_langtok(tgt, task.args.langtoks["main"][1])
        samples.append((s, tok))
        pad = task.source_dictionary.pad()
    # one batch mixing three directions: left-pad sources to a common length
    width = max(s["net_input"]["src_tokens"].size(1) for s, _ in samples)
    src_tokens = torch.cat([torch.nn.functional.pad(s["net_input"]["src_tokens"],
                                                    (width - s["net_input"]["src_tokens"].size(1), 0), value=pad)
                            for s, _ in samples])
    src_lengths = torch.cat([s["net_input"]["src_lengths"] for s, _ in samples])
    tgt_toks = torch.cat([torch.full((s["net_input"]["src_tokens"].size(0),), t) for s, t in samples])
    mixed = {"id": torch.arange(src_tokens.size(0)),
             "net_input": {"src_tokens": src_tokens, "src_lengths": src_lengths, "lslo_tgt_langtok": tgt_toks}}
    gen_args = options.parse_args_and_arch(options.get_generation_parser(), [
        data["data_dir"], "--beam", "5", "--max-len-b", "12", "--nbest", "2"])
    generator = task.build_generator([model], gen_args)
    with torch.no_grad():
        hypos = generator.generate([model], mixed, prefix_tokens=tgt_toks.unsqueeze(1))
    return task, model, hypos, src_tokens, pad, tgt_toks


@pytest.mark.parametrize("enc,dec,modules", STRATEGIES)
def test_beam_search_routes_like_teacher_forcing(tiny_data, tiny_base_checkpoint, enc, dec, modules):
    task, model, hypos, src_tokens, pad, tgt_toks = mixed_beam_search(tiny_data, tiny_base_checkpoint, enc, dec,
                                                                      modules)
    eos = task.target_dictionary.eos()
    with torch.no_grad():
        for i, nbest in enumerate(hypos):
            src = src_tokens[i][src_tokens[i] != pad]
            for hyp in nbest:
                assert hyp["tokens"][0] == tgt_toks[i]
                expect = teacher_forced_scores(model, src, hyp["tokens"], eos)
                torch.testing.assert_close(hyp["positional_scores"], expect, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel", ["dense", "grouped", "grouped_py"])
def test_beam_search_is_the_same_with_every_kernel(tiny_data, tiny_base_checkpoint, kernel, monkeypatch):
    """Every routing kernel, forced on every layer (so on the one-token decoding steps too), gives the
    hypotheses of ``gather``; ``grouped_py`` is ``grouped`` with its Python loop in place of C++."""
    from lslo_fairseq.modules import native
    from lslo_fairseq.modules.lslo_linear import LSLoLinear

    def search(choice):
        monkeypatch.setattr(LSLoLinear, "kernel_choice", choice)
        with native.python_loop() if kernel == "grouped_py" and choice != "gather" else contextlib.nullcontext():
            return mixed_beam_search(tiny_data, tiny_base_checkpoint, "src,tgt", "tgt,src", "all")[2]

    reference, hypos = search("gather"), search(kernel.replace("_py", ""))
    assert len(hypos) == len(reference) == 18
    for nbest, expect in zip(hypos, reference):
        assert [h["tokens"].tolist() for h in nbest] == [h["tokens"].tolist() for h in expect]
        for h, e in zip(nbest, expect):
            torch.testing.assert_close(h["positional_scores"], e["positional_scores"], rtol=1e-5, atol=1e-5)


def test_inference_step_hands_the_target_language_to_the_encoder(tiny_data, tiny_base_checkpoint):
    """Through the task (as fairseq-generate calls it): target-indexed encoder layers see the
    target language; decoding matches teacher forcing."""
    task, model, _ = build(tiny_data, tiny_base_checkpoint, "tgt", "tgt", "all", "en", "oc")
    s = batch(task)
    gen_args = options.parse_args_and_arch(options.get_generation_parser(), [
        tiny_data["data_dir"], "--beam", "5", "--max-len-b", "12"])
    generator = task.build_generator([model], gen_args)
    with torch.no_grad():
        hypos = task.inference_step(generator, [model], s)
        pad, eos = task.source_dictionary.pad(), task.target_dictionary.eos()
        for i, nbest in enumerate(hypos):
            src = s["net_input"]["src_tokens"][i]
            src = src[src != pad]
            expect = teacher_forced_scores(model, src, nbest[0]["tokens"], eos)
            torch.testing.assert_close(nbest[0]["positional_scores"], expect, rtol=1e-4, atol=1e-4)
