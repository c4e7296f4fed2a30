"""Self-training's labels: the model's decoding, exactly where behaviour is unknown, and nowhere else."""

from __future__ import annotations

import numpy as np
import torch

from popdecode.adapt.labelled import labelled_pieces, parse_labelled_trials
from popdecode.adapt.pseudo_labels import pseudo_labelled
from popdecode.evaluate.predict import predict_split
from popdecode.model.config import POYOConfig
from popdecode.model.poyo import POYO
from popdecode.train import setup
from train.easy_data import TINY_MODEL, easy_session


def test_unlabelled_train_samples_get_the_decoding_and_everything_else_keeps_its_values():
    torch.manual_seed(0)
    session = easy_session("new-0", seed=3, units=9, seconds=40.0)
    model = POYO(config=POYOConfig(**TINY_MODEL), readouts={"hand_vel": 2})  # untrained: any decoding will do
    setup.register_sessions(model, [session])
    meta = {"normalization": setup.normalization_to_meta({"hand_vel": (np.array([0.5, -0.5], np.float32),
                                                                       np.array([2.0, 3.0], np.float32))}),
            "session_readouts": {session.id: ["hand_vel"]}}
    pieces = labelled_pieces(session, parse_labelled_trials("2")[0], 1.0)

    pseudo = pseudo_labelled(model, meta, session, pieces)

    old, new = session.series["hand_vel"], pseudo.series["hand_vel"]
    assert new is not old and np.array_equal(new.timestamps, old.timestamps)
    train = session.split("train").contains(old.timestamps)
    labelled = pieces.contains(old.timestamps)
    replaced = train & ~labelled
    assert replaced.sum() > 100 and labelled.sum() > 10
    # Labelled trials, valid and test: untouched (model selection and the score stay honest).
    assert np.array_equal(new.values[~replaced], old.values[~replaced])
    # The rest of the train split: what predict_split decodes there, in original units.
    tokenizer = setup.make_tokenizer(model, [session], meta, train=False, window_length=1.0)
    decoded = predict_split(model, [session], tokenizer, split="train",
                            normalization=setup.normalization_from_meta(meta))[(session.id, "hand_vel")]
    at = {round(t, 6): v for t, v in zip(decoded.timestamps, decoded.predictions)}
    expected = np.stack([at[round(t, 6)] for t in old.timestamps[replaced]])
    np.testing.assert_allclose(new.values[replaced], expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(new.values[replaced], old.values[replaced])
    assert session.series["hand_vel"] is old  # the input session is not modified
