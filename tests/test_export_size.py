"""lslo-export writes a tensor that the model ties (--share-all-embeddings: the encoder and decoder
embeddings and the output projection, M2M-100's largest matrix) once: a merged direction and an
attached checkpoint are about the size of one copy of the parameters, as the base checkpoint is."""
import pytest
import torch

from lslo_fairseq.cli.export import main as export_main

pytestmark = pytest.mark.slow  # uses the session's fairseq-trained lslo_run and tiny_base_checkpoint

TIED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight")


def export(*argv):
    assert export_main([str(a) for a in argv]) == 0


def unique_bytes(state):
    """Bytes of the tensors of a state dict, each storage counted once (what torch.save writes)."""
    storages = {}
    for v in state.values():
        if torch.is_tensor(v):
            storages[v.untyped_storage().data_ptr()] = v.untyped_storage().nbytes()
    return sum(storages.values())


def all_bytes(state):
    return sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))


def slack(state):
    """torch.save's zip records (~0.5 kB per tensor) and the pickled options."""
    return 512 * len(state) + 64 * 1024


def assert_tied(path, state):
    ptrs = {state[k].untyped_storage().data_ptr() for k in TIED}
    assert len(ptrs) == 1, f"{path}: the tied embedding is written {len(ptrs)} times"


def assert_tied_once(path, state):
    assert_tied(path, state)
    size = path.stat().st_size
    assert size < unique_bytes(state) + slack(state), (size, unique_bytes(state), all_bytes(state))
    # the point of the test: without sharing the file would hold the embedding three times
    emb = state[TIED[0]]
    assert all_bytes(state) - unique_bytes(state) == 2 * emb.numel() * emb.element_size()


def test_merged_export_is_the_size_of_one_copy_of_the_parameters(lslo_run, tiny_base_checkpoint, tmp_path):
    out = tmp_path / "oc-ko.pt"
    export("fold", "--checkpoint", lslo_run["ckpt"], "-s", "oc", "-t", "ko", "--out", out)
    state = torch.load(out, map_location="cpu", weights_only=True)["model"]
    assert_tied_once(out, state)
    base = torch.load(tiny_base_checkpoint, map_location="cpu")["model"]
    assert unique_bytes(state) == unique_bytes(base)  # the same parameters as the plain base
    base_file = tiny_base_checkpoint.stat().st_size  # which also holds fairseq's optimizer state
    assert out.stat().st_size < base_file, (out.stat().st_size, base_file)
    # still a transformer whose tied weights are the base's embedding (LoRA does not touch it)
    torch.testing.assert_close(state[TIED[2]], base[TIED[0]], rtol=0, atol=0)


def half_copy(path, out):
    """``path`` with its float weights in float16, tied ones still one tensor (an fp16 release)."""
    ckpt = torch.load(path, map_location="cpu")
    halves = {}
    for k, v in ckpt["model"].items():
        if v.is_floating_point():
            ckpt["model"][k] = halves.setdefault(v.untyped_storage().data_ptr(), v.half())
    torch.save(ckpt, out)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_attached_checkpoint_is_the_size_of_one_copy_of_the_parameters(lslo_run, tiny_base_checkpoint, tmp_path,
                                                                       dtype):
    ad, full = tmp_path / "a.pt", tmp_path / "full.pt"
    export("adapters", "--checkpoint", lslo_run["ckpt"], "--out", ad)
    adapters = torch.load(ad, map_location="cpu", weights_only=True)
    assert not set(TIED) & set(adapters["tensors"])  # adapters only: no base tensor at all
    base = tiny_base_checkpoint if dtype == "float32" else half_copy(tiny_base_checkpoint, tmp_path / "half.pt")
    assert_tied(base, torch.load(base, map_location="cpu")["model"])  # (its file also holds Adam's moments)
    export("attach", "--base", base, "--adapters", ad, "--out", full)
    state = torch.load(full, map_location="cpu", weights_only=True)["model"]
    assert state[TIED[0]].dtype == getattr(torch, dtype)  # the base's dtype is kept
    assert_tied_once(full, state)
