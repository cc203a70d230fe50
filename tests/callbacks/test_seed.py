import pickle

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_recipe import FixedSeed, RecipeReport, RecipeWarning
from tests.helpers import LitModel, digits_arrays, loader, make_trainer, read_events, small_cnn


def _run(tmp_path, seed, **trainer_kwargs):
    cb = FixedSeed(seed)  # before the model, as documented
    model = LitModel(small_cnn(dropout=0.3), lr=1e-2)
    x, y = digits_arrays()
    trainer = make_trainer(tmp_path, [cb], max_steps=8, **trainer_kwargs)
    trainer.fit(model, loader(x[:320], y[:320], batch_size=32, shuffle=True))
    return model, cb, trainer


def test_same_seed_gives_bit_identical_losses(tmp_path):
    a, cb_a, _ = _run(tmp_path / "a", 3)
    b, cb_b, _ = _run(tmp_path / "b", 3)
    c, _, _ = _run(tmp_path / "c", 4)
    assert a.train_losses == b.train_losses
    assert cb_a.weights_fingerprint == cb_b.weights_fingerprint
    assert cb_a.batch_fingerprint == cb_b.batch_fingerprint
    assert a.train_losses != c.train_losses


def test_seed_and_fingerprints_are_logged_at_step_zero(tmp_path):
    _, cb, trainer = _run(tmp_path, 11)
    texts = read_events(trainer.logger).texts("recipe/seed/fingerprint")
    assert len(texts) == 1 and texts[0][0] == 0
    assert (
        "| 11 |" in texts[0][1]
        and cb.weights_fingerprint in texts[0][1]
        and cb.batch_fingerprint in texts[0][1]
    )
    [finding] = cb.findings
    assert finding.status == "pass" and finding.numbers["seed"] == 11


def test_constructing_seeds_the_model_init():
    FixedSeed(5)
    w1 = torch.nn.Linear(4, 4).weight.clone()
    FixedSeed(5)
    assert torch.equal(w1, torch.nn.Linear(4, 4).weight)


def test_deterministic_flag_is_set_during_fit_and_restored(tmp_path):
    seen = {}

    class Probe(BoringModel):
        def training_step(self, batch, batch_idx):
            seen["det"] = torch.are_deterministic_algorithms_enabled()
            return super().training_step(batch, batch_idx)

    assert not torch.are_deterministic_algorithms_enabled()
    trainer = make_trainer(tmp_path, [FixedSeed(1, deterministic=True)], max_steps=1)
    trainer.fit(Probe())
    assert seen["det"] is True
    assert not torch.are_deterministic_algorithms_enabled()


def test_works_with_lightning_boring_model(tmp_path):
    cb = FixedSeed(0)
    report = RecipeReport(print_summary=False)
    trainer = make_trainer(tmp_path, [cb, report], max_steps=2)
    trainer.fit(BoringModel())
    assert [f.check for f in report.findings] == ["FixedSeed"]


def test_state_round_trip_and_pickle():
    cb = FixedSeed(9)
    cb.weights_fingerprint, cb.batch_fingerprint = "abc", "def"
    other = FixedSeed(9)
    other.load_state_dict(cb.state_dict())
    assert (other.weights_fingerprint, other.batch_fingerprint) == ("abc", "def")
    clone = pickle.loads(pickle.dumps(cb))
    assert clone.seed == 9 and clone.state_dict() == cb.state_dict()
    FixedSeed(9).load_state_dict({})  # older/empty checkpoints load


def test_resume_keeps_fingerprints_and_warns_on_a_different_seed(tmp_path):
    x, y = digits_arrays()
    data = loader(x[:128], y[:128], batch_size=32)
    cb = FixedSeed(21)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = make_trainer(tmp_path, [cb, ckpt], max_steps=2, enable_checkpointing=True)
    trainer.fit(LitModel(small_cnn()), data)
    saved = torch.load(ckpt.last_model_path, weights_only=False)["callbacks"]
    assert saved[cb.state_key]["seed"] == 21

    same = FixedSeed(21)
    trainer = make_trainer(tmp_path, [same], max_steps=4, enable_checkpointing=True)
    trainer.fit(LitModel(small_cnn()), data, ckpt_path=ckpt.last_model_path)
    assert (
        same.weights_fingerprint == cb.weights_fingerprint and same.batch_fingerprint == cb.batch_fingerprint
    )

    changed = FixedSeed(22)
    trainer = make_trainer(tmp_path, [changed], max_steps=4, enable_checkpointing=True)
    with pytest.warns(
        RecipeWarning, match="resumed from a checkpoint seeded with 21, but this run uses seed=22"
    ):
        trainer.fit(LitModel(small_cnn()), data, ckpt_path=ckpt.last_model_path)


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"FixedSeed\(seed='1'\): pass an integer seed"):
        FixedSeed("1")
    with pytest.raises(ValueError, match=r"FixedSeed\(seed=-1\): pass a seed between 0 and 4294967295"):
        FixedSeed(-1)
