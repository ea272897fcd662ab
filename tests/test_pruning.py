"""Gradual pruning (eq. 4) on torch.nn.utils.prune, pruning pools, and weight learning (eq. 5)."""
import json

import pytest
import torch

from lslo_fairseq.config import LSLoConfigError
from lslo_fairseq.pruning.pools import apply_ratio, build_pools, records
from lslo_fairseq.pruning.schedule import GradualPruningSchedule
from model_utils import ROWS_FOR_TRAINING, build_tiny_model, mixed_batch, randomize_adapters


@pytest.mark.parametrize("E,k", [(2, 8), (5, 8), (7, 8), (2, 2), (7, 2)])  # table 8, T = 15
def test_schedule_is_equation_4_for_the_paper_settings(E, k):
    P, T = 0.9, 15
    s = GradualPruningSchedule(P, E, k, T)
    for e in range(1, T + 1):
        if e <= E:
            expect = 0.0
        elif e <= E + k:
            expect = P - P * (1 - (e - E) / k) ** 3
        else:
            expect = P
        assert s.ratio_at(e) == pytest.approx(expect, abs=1e-12)
    assert s.ratio_at(E + k) == pytest.approx(P) and s.ratio_at(E) == 0.0


def test_schedule_hand_values_and_errors():
    s = GradualPruningSchedule(0.9, 2, 8, 15)
    assert s.ratio_at(3) == pytest.approx(0.2970703125)  # 0.9 (1 - (7/8)^3)
    assert s.ratio_at(6) == pytest.approx(0.7875)  # 0.9 (1 - (1/2)^3)
    upd = GradualPruningSchedule(0.5, 100, 400, unit="update")
    assert upd.ratio_at(300) == pytest.approx(0.5 - 0.5 * 0.5 ** 3)
    with pytest.raises(LSLoConfigError, match="exceeds the run's length"):
        GradualPruningSchedule(0.9, 8, 8, 15)
    with pytest.raises(LSLoConfigError, match=r"\[0, 1\)"):
        GradualPruningSchedule(1.0, 2, 8, 15)


@pytest.mark.parametrize("shape", [[], ["--lslo-adapter-shape", "paper", "--lslo-fc-offset", "16"]],
                         ids=["full", "paper"])
@pytest.mark.parametrize("kind,extra", [("gps", ["--lslo-prune-targets", "en,ko"]), ("ise", []), ("lsp", []),
                                        ("gps", ["--lslo-prune-matrices", "A,B", "--lslo-prune-targets", "fr,oc"])])
def test_every_pool_reaches_its_ratio_and_pruned_entries_stay_zero(kind, extra, shape):
    model, task = build_tiny_model(extra=["--lslo-prune", kind, *extra, *shape])
    randomize_adapters(model)
    pools = build_pools(model.lslo_layers, model.lslo_config)
    assert pools
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    src, lens, prev, target = mixed_batch(task, ROWS_FOR_TRAINING)
    model.train()
    previous = {}
    for ratio in (0.2, 0.5, 0.8):
        apply_ratio(pools, ratio)
        for pool in pools:
            assert abs(pool.n_pruned() - ratio * pool.size) <= 1, (pool.name, ratio)
        for _ in range(3):  # optimizer steps after pruning: masked entries stay exactly zero
            opt.zero_grad()
            out, _ = model(src, lens, prev)
            torch.nn.functional.cross_entropy(out.transpose(1, 2), target).backward()
            opt.step()
        for pool in pools:
            for m in pool.members:
                mask = m.block(getattr(m.layer, m.name + "_mask"))
                used = m.block(getattr(m.layer, m.name))  # what the last forward used
                assert torch.count_nonzero(used[mask == 0]) == 0
                key = (pool.name, m.layer.site, m.name, m.lang)
                if key in previous:  # pruned once, pruned forever
                    assert bool((mask[previous[key] == 0] == 0).all())
                previous[key] = mask.clone()
    # languages outside the gps targets are never pruned
    if kind == "gps":
        for lslo in model.lslo_layers.values():
            spared = next(l for l in model.lslo_config.languages if l not in model.lslo_config.prune.targets)
            lo, hi = lslo.lang_columns(model.lslo_config.languages.index(spared))
            assert bool(lslo.lora_B_mask[:, lo:hi].all())


def test_ise_scores_sum_to_zero_in_every_pool():
    model, _ = build_tiny_model(extra=["--lslo-prune", "ise"])
    randomize_adapters(model)
    pools = build_pools(model.lslo_layers, model.lslo_config)
    P = 0.7
    apply_ratio(pools, P)
    recs = records(pools, model.lslo_config)
    assert {r["pool"] for r in recs} == {"encoder.layers.0", "encoder.layers.1", "decoder.layers.0", "decoder.layers.1"}
    for pool in {r["pool"] for r in recs}:
        rs = [r for r in recs if r["pool"] == pool]
        total, pruned = sum(r["n_params"] for r in rs), sum(r["n_pruned"] for r in rs)
        score_sum = sum(r["n_pruned"] - P * r["n_params"] for r in rs)  # eq. 6 summed
        assert score_sum == pytest.approx(pruned - P * total) and abs(score_sum) <= 0.5
        # with random weights some matrices are pruned more than P and some less
        scores = [r["n_pruned"] - P * r["n_params"] for r in rs]
        assert min(scores) < 0 < max(scores)


def test_checkpoint_keys_do_not_depend_on_pruning():
    pruned, _ = build_tiny_model(extra=["--lslo-prune", "lsp"])
    randomize_adapters(pruned)
    apply_ratio(build_pools(pruned.lslo_layers, pruned.lslo_config), 0.6)
    plain, _ = build_tiny_model()
    assert set(pruned.state_dict()) == set(plain.state_dict())
    plain.load_state_dict(pruned.state_dict())  # masks carried over into a model built without pruning
    for path, lslo in pruned.lslo_layers.items():
        torch.testing.assert_close(plain.lslo_layers[path].effective("lora_B"), lslo.effective("lora_B"))
    again, _ = build_tiny_model(extra=["--lslo-prune", "lsp"])
    again.load_state_dict(plain.state_dict())
    for path, lslo in pruned.lslo_layers.items():
        assert torch.equal(again.lslo_layers[path].lora_B_mask, lslo.lora_B_mask)


def test_weight_learning_mixes_two_banks_with_softmax_weights():
    model, task = build_tiny_model(extra=["--lslo-weight-learning"], enc_index="paper", dec_index="paper")
    layer = model.encoder.layers[0]
    w = layer.lslo_index_weights()
    assert w.tolist() == [0.5, 0.5]
    fc1 = layer.fc1
    assert fc1.param_names() == ["lora_A_src", "lora_B_src", "lora_A_tgt", "lora_B_tgt"]
    with pytest.raises(LSLoConfigError, match="drop --lslo-encoder-index"):
        build_tiny_model(extra=["--lslo-weight-learning"], enc_index="src", dec_index="paper")
    # eq. 5 by hand on one layer
    randomize_adapters(model)
    with torch.no_grad():
        layer.lslo_index_weights.logits.copy_(torch.tensor([0.3, -0.2]))
    x = torch.randn(3, 2, fc1.in_features)
    model.lslo_router.set(torch.tensor([0, 3]), torch.tensor([1, 2]))
    ws = torch.softmax(torch.tensor([0.3, -0.2]), 0)
    expect = fc1.base_layer(x) + ws[0] * fc1.lora_delta(x, torch.tensor([0, 3]), "src") \
        + ws[1] * fc1.lora_delta(x, torch.tensor([1, 2]), "tgt")
    torch.testing.assert_close(fc1(x), expect)
    json_out = model.index_weights()
    assert len(json_out["encoder"]) == 2 and json_out["encoder_index"][0] == "src"
    assert all(sum(pair) == pytest.approx(1.0) for pair in json_out["encoder"] + json_out["decoder"])
    assert json.loads(json.dumps(json_out)) == json_out
