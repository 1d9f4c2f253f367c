"""Distillation training on a tiny random target: the loss falls, a resumed run repeats an
uninterrupted one, batching and the schedule, and the config's checks."""
from __future__ import annotations

import pytest
import torch

from a1.distill.forward import layers_forward, prefill_hidden
from a1.models.layers import dense_weight
from a1.distill.measure import top1_agreement
from a1.distill.run import DistillConfig
from a1.distill.train import batches, distill_loss, init_layers, lr_at, train
from a1.models.draft_model import new_layers_draft


def fresh_draft(target, init=(0, 1)):
    draft = new_layers_draft(target.model, len(init))
    init_layers(draft, target.model, list(init))
    return draft


def test_torch_forward_matches_the_models_own(target) -> None:
    ids = [5, 9, 17, 3, 40, 22, 8]
    with torch.no_grad():
        ours = layers_forward(target.model, list(target.model.layers), target.model.norm.weight, torch.tensor([ids]))[0]
    torch.testing.assert_close(ours, prefill_hidden(target.model, ids), atol=1e-5, rtol=0)


def test_init_copies_the_target_layers(target) -> None:
    draft = fresh_draft(target, (0, 3))
    ids = [5, 9, 17, 3]
    from a1.models.draft_model import skip_draft

    skip = skip_draft(target.model, [0, 3])
    torch.testing.assert_close(prefill_hidden(skip, ids), prefill_hidden(draft, ids), atol=1e-5, rtol=0)


def test_loss_falls_and_agreement_rises(target, sequences, tmp_path) -> None:
    draft = fresh_draft(target)
    dense_head = dense_weight(target.model.lm_head_weight)  # the target's head, frozen
    before, _, _ = distill_loss(draft, target.model, dense_head, sequences)
    agreement_before = top1_agreement(target.model, draft, [(s.ids[: s.start].tolist(), s.ids[s.start :].tolist())
                                                            for s in sequences])[0]
    state = train(draft, target.model, sequences, seconds=1e9, lr=3e-3, batch_tokens=64, seed=0,
                  checkpoint=tmp_path / "ck.pt", max_steps=60)
    after, _, _ = distill_loss(draft, target.model, dense_head, sequences)
    agreement_after = top1_agreement(target.model, draft, [(s.ids[: s.start].tolist(), s.ids[s.start :].tolist())
                                                           for s in sequences])[0]
    assert state.step == 60 and state.tokens > 0
    assert float(after) < 0.8 * float(before)  # a cross-entropy: it cannot fall below the teacher's entropy
    assert agreement_after > agreement_before
    assert all(not p.requires_grad for p in draft.own_parameters())  # back to inference


def test_frozen_embedding_and_head(target, sequences, tmp_path) -> None:
    embed, head = target.model.embed_weight.clone(), target.model.lm_head.clone()
    train(fresh_draft(target), target.model, sequences, seconds=1e9, lr=3e-3, batch_tokens=64, seed=0,
          checkpoint=tmp_path / "ck.pt", max_steps=3)
    assert torch.equal(embed, target.model.embed_weight) and torch.equal(head, target.model.lm_head)


def test_resume_continues_from_the_checkpoint(target, sequences, tmp_path) -> None:
    straight = fresh_draft(target)
    train(straight, target.model, sequences, 1e9, 3e-3, 64, 0, tmp_path / "a.pt", max_steps=10)

    def interrupt(state) -> None:
        if state.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # checkpoints after every step: the last one is step 4's
        train(fresh_draft(target), target.model, sequences, 1e9, 3e-3, 64, 0, tmp_path / "b.pt",
              checkpoint_seconds=0.0, on_step=interrupt, max_steps=10)
    steps = []
    again = fresh_draft(target)  # a new process: fresh weights, everything else from the checkpoint
    final = train(again, target.model, sequences, 1e9, 3e-3, 64, 0, tmp_path / "b.pt", max_steps=10,
                  on_step=lambda state: steps.append(state.step))
    assert steps == [5, 6, 7, 8, 9, 10] and final.step == 10
    for a, b in zip(straight.own_parameters(), again.own_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_resume_refuses_another_drafts_checkpoint(target, sequences, tmp_path) -> None:
    train(fresh_draft(target), target.model, sequences, 1e9, 3e-3, 64, 0, tmp_path / "ck.pt", max_steps=1)
    with pytest.raises(ValueError, match="another draft's parameters"):
        train(fresh_draft(target, (0, 1, 2)), target.model, sequences, 1e9, 3e-3, 64, 0, tmp_path / "ck.pt",
              max_steps=2)


def test_batches_cover_every_sequence_once_per_epoch(sequences) -> None:
    for epoch in range(3):
        plan = batches(sequences, 48, seed=0, epoch=epoch)
        assert sorted(i for b in plan for i in b) == list(range(len(sequences)))
        for b in plan:
            assert len(b) == 1 or max(sequences[i].ids.numel() for i in b) * len(b) <= 48
    assert batches(sequences, 48, 0, 0) != batches(sequences, 48, 0, 1)


def test_schedule() -> None:
    assert lr_at(0.0, 1.0) == pytest.approx(0.05) and lr_at(0.03, 1.0) == pytest.approx(1.0)
    assert lr_at(1.0, 1.0) == pytest.approx(0.1) and lr_at(0.5, 1.0) < lr_at(0.2, 1.0)


def test_config_checks() -> None:
    assert DistillConfig(num_layers=4).init_layers(30) == [0, 1, 2, 3]
    assert DistillConfig(num_layers=3, init="spread").init_layers(30) == [0, 14, 29]  # round(14.5) is 14
    assert DistillConfig(num_layers=2, init="new").init_layers(30) == [None, None]
    assert DistillConfig(num_layers=2, init="0,29").init_layers(30) == [0, 29]
    with pytest.raises(ValueError, match="init"):
        DistillConfig(num_layers=2, init="0,30").init_layers(30)
    with pytest.raises(ValueError, match="init must be"):
        DistillConfig(num_layers=2, init="middle").init_layers(30)
    with pytest.raises(ValueError, match="num_layers"):
        DistillConfig(num_layers=0)
    with pytest.raises(ValueError, match="datasets: unknown"):
        DistillConfig(datasets=("nope",))
    assert "minutes" not in DistillConfig().training_key()  # a resumed run may get more time
