"""Contrastive loss, captions, augmentation, sampling, split and the resumable training loop."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from vlm_micro.errors import AnnotationError, ConfigError
from vlm_micro.model import load_model
from vlm_micro.training.augment import AugmentSettings, augment_tiles
from vlm_micro.training.captions import build_caption_bank, positive_mask, sample_captions
from vlm_micro.training.checkpoint import CHECKPOINT_FILE
from vlm_micro.training.contrastive import TrainSettings, multi_positive_clip_loss, train_contrastive
from vlm_micro.training.data import TileData, sampling_weights, split_by_image

N_CLASSES = 3


def _tile_data(draw, n_images: int, seed: int) -> TileData:
    rng = np.random.default_rng(seed)
    names = ["alpha", "beta", "gamma"]
    tiles, classes, states, ids = [], [], [], []
    for index in range(n_images * 4):
        cell_type = index % N_CLASSES
        kind = 1 + (index // 5) % 2 if index % 5 == 4 else 0
        tiles.append(draw(rng, names[cell_type], ["", "debris", "blur"][kind]))
        classes.append(cell_type)
        states.append(kind)
        ids.append(f"img{index // 4}")
    states = np.array(states)
    return TileData(np.stack(tiles), np.array(classes), states, (states > 0).astype(np.int64),
                    ["fluorescence"] * len(tiles), np.array(ids, dtype=object))


def test_clip_loss_single_positive_matches_open_clip():
    torch.manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(10.0)
    ours = multi_positive_clip_loss(images, texts, torch.eye(6, dtype=torch.bool), scale)
    reference = open_clip.loss.ClipLoss()(images, texts, scale)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_clip_loss_multi_positive_prefers_same_class():
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[True, False], [True, False], [False, True]])
    aligned = multi_positive_clip_loss(images, texts, positives, torch.tensor(10.0))
    swapped = multi_positive_clip_loss(images, texts.flip(0), positives, torch.tensor(10.0))
    assert aligned < swapped


def test_positive_mask_matches_class_and_state():
    groups = torch.tensor([0, 1, N_CLASSES + 0, N_CLASSES + 2])  # alpha, beta, normal, blur captions
    mask = positive_mask(groups, torch.tensor([0, 1, -1]), torch.tensor([2, 0, 0]), N_CLASSES)
    assert mask.tolist() == [[True, False, False, True], [False, True, True, False], [False, False, True, False]]


def test_caption_bank_groups(vocabulary):
    bank = build_caption_bank(vocabulary, open_clip.get_tokenizer("ViT-B-32"))
    assert len(set(bank.captions)) == len(bank.captions)
    fluorescence_alpha = {bank.captions[k] for k in bank.class_pool("fluorescence", 0)}
    assert "a fluorescence image of round alpha cells." in fluorescence_alpha
    assert "a micrograph of alpha cells." in fluorescence_alpha
    assert {bank.captions[k] for k in bank.state_pools[2]} == {"an image of blurry cells."}
    assert bank.tokens.shape[0] == len(bank.captions)


def test_sample_captions_follow_labels(vocabulary):
    bank = build_caption_bank(vocabulary, open_clip.get_tokenizer("ViT-B-32"))
    rng = np.random.default_rng(0)
    classes = np.array([0, 1, -1, 2] * 50)
    states = np.array([-1, 0, 2, 1] * 50)
    class_captions, state_captions = sample_captions(bank, classes, states, ["brightfield"] * 200, rng)
    assert (class_captions[2::4] == -1).all()
    assert (state_captions[0::4] == -1).all()
    class_groups = bank.groups[torch.from_numpy(class_captions[classes >= 0])].numpy()
    state_groups = bank.groups[torch.from_numpy(state_captions[states >= 0])].numpy()
    assert np.array_equal(class_groups, classes[classes >= 0])
    assert np.array_equal(state_groups, states[states >= 0] + N_CLASSES)
    brightfield_alpha = {bank.captions[k] for k in class_captions[0::4]}
    assert brightfield_alpha <= {"a micrograph of alpha cells.", "a micrograph of round alpha cells."}


def test_augment_keeps_shape_and_is_seeded():
    tiles = torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8)
    first = augment_tiles(tiles, torch.Generator().manual_seed(1))
    second = augment_tiles(tiles, torch.Generator().manual_seed(1))
    assert first.shape == tiles.shape
    assert first.dtype == torch.uint8
    assert torch.equal(first, second)


def test_augment_geometry_only_permutes_pixels():
    tiles = torch.arange(2 * 4 * 4 * 3, dtype=torch.uint8).view(2, 4, 4, 3)
    settings = AugmentSettings(gain=0.0, offset=0.0, stain=0.0)
    out = augment_tiles(tiles, torch.Generator().manual_seed(3), settings)
    for before, after in zip(tiles, out):
        assert sorted(before.flatten().tolist()) == sorted(after.flatten().tolist())


def test_sampling_weights_balance_classes():
    data = TileData(np.zeros((6, 2, 2, 3), np.uint8), np.array([0, 0, 0, 0, 1, 2]), np.array([0, 0, 0, 1, 0, 0]),
                    np.array([0, 0, 0, 1, 0, 0]), ["fluorescence"] * 6, np.array(list("aabbcc"), dtype=object))
    weights = sampling_weights(data, anomaly_share=0.0)
    assert weights[:4].sum() == pytest.approx(1 / 3)
    assert weights[4] == pytest.approx(1 / 3)
    mixed = sampling_weights(data, anomaly_share=0.5)
    assert mixed[3] > mixed[0]
    assert mixed.sum() == pytest.approx(1.0)


def test_split_by_image_has_no_leakage():
    image_ids = np.array([f"img{k // 4}" for k in range(80)], dtype=object)
    classes = np.array([(k // 4) % 3 for k in range(80)])
    train, val = split_by_image(image_ids, classes, val_fraction=0.25, seed=0)
    assert set(image_ids[train]).isdisjoint(set(image_ids[val]))
    assert len(train) + len(val) == 80
    assert set(classes[val]) == {0, 1, 2}
    again_train, _ = split_by_image(image_ids, classes, val_fraction=0.25, seed=0)
    assert np.array_equal(train, again_train)


def test_split_needs_two_images():
    with pytest.raises(AnnotationError, match="at least two"):
        split_by_image(np.array(["one"] * 5, dtype=object), np.zeros(5, int), 0.25, 0)


def test_train_settings_reject_invalid_values():
    with pytest.raises(ConfigError, match="epochs"):
        TrainSettings.from_dict({"epochs": 0})
    with pytest.raises(ConfigError, match="nothing would be trained"):
        TrainSettings.from_dict({"lock_image": True, "lock_text": True})
    with pytest.raises(ConfigError, match="unknown training setting"):
        TrainSettings.from_dict({"epoch": 3})


class Interrupt(Exception):
    pass


def _train(tiny_dir, vocabulary, train, val, checkpoint_dir=None, on_step=None, **overrides):
    loaded = load_model(f"local-dir:{tiny_dir}", device="cpu")
    recipe = {"epochs": 3, "batch_size": 16, "steps_per_epoch": 3, "learning_rate": 1e-3, "patience": 3, "seed": 5}
    settings = TrainSettings(**{**recipe, **overrides})
    bank = build_caption_bank(vocabulary, loaded.tokenizer)
    result = train_contrastive(loaded, vocabulary, bank, train, val, settings, checkpoint_dir=checkpoint_dir,
                               on_step=on_step)
    return loaded.model.state_dict(), result


def test_training_resumes_to_same_weights(tiny_dir, vocabulary, draw, tmp_path):
    data = _tile_data(draw, 8, seed=0)
    train, val = data.subset(np.arange(24)), data.subset(np.arange(24, 32))
    reference, reference_result = _train(tiny_dir, vocabulary, train, val)

    def stop_in_second_epoch(epoch, step):
        if epoch == 1 and step == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        _train(tiny_dir, vocabulary, train, val, checkpoint_dir=tmp_path, on_step=stop_in_second_epoch)
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    resumed, resumed_result = _train(tiny_dir, vocabulary, train, val, checkpoint_dir=tmp_path)

    assert [entry["epoch"] for entry in resumed_result.history] == [1, 2, 3]
    assert resumed_result.best_epoch == reference_result.best_epoch
    for name, tensor in reference.items():
        assert torch.equal(tensor, resumed[name]), name


def test_training_is_deterministic_and_locks_towers(tiny_dir, vocabulary, draw):
    data = _tile_data(draw, 6, seed=1)
    train, val = data.subset(np.arange(16)), data.subset(np.arange(16, 24))
    first, _ = _train(tiny_dir, vocabulary, train, val, lock_text=True, patience=5)
    second, _ = _train(tiny_dir, vocabulary, train, val, lock_text=True, patience=5)
    base = load_model(f"local-dir:{tiny_dir}", device="cpu").model.state_dict()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert torch.equal(first["token_embedding.weight"], base["token_embedding.weight"])
    assert not torch.equal(first["visual.conv1.weight"], base["visual.conv1.weight"])
