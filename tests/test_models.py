from __future__ import annotations

import pytest
import torch
from torch import nn

from slimbench.errors import ModelError
from slimbench.models import available_models, build_model, count_parameters, normalize_spec

# Published counts: He et al. / Idelbayev (CIFAR ResNets), torchvision (ImageNet-stem ResNet-34, DenseNet-121,
# MobileNetV2), kuangliu/pytorch-cifar (CIFAR-stem ResNet-18, PreActResNet-18, DenseNet-121).
PUBLISHED = [
    ({"model": "resnet20"}, 272_474),
    ({"model": "resnet20", "shortcut": "A"}, 269_722),
    ({"model": "resnet32", "shortcut": "A"}, 464_154),
    ({"model": "resnet44", "shortcut": "A"}, 658_586),
    ({"model": "resnet56", "shortcut": "A"}, 853_018),
    ({"model": "resnet110", "shortcut": "A"}, 1_727_962),
    ({"model": "resnet18"}, 11_173_962),
    ({"model": "resnet18", "stem": "imagenet", "num_classes": 1000}, 11_689_512),
    ({"model": "resnet34", "stem": "imagenet"}, 21_289_802),
    ({"model": "resnet34", "stem": "imagenet", "num_classes": 1000}, 21_797_672),
    ({"model": "preactresnet18"}, 11_171_146),
    ({"model": "densenet121", "stem": "imagenet", "num_classes": 1000}, 7_978_856),
    ({"model": "densenet121"}, 6_956_298),
    ({"model": "mobilenetv2"}, 2_236_682),
]


@pytest.mark.parametrize(("spec", "count"), PUBLISHED, ids=lambda v: str(v))
def test_parameter_counts_match_published(spec, count):
    assert count_parameters(build_model(spec)) == count


@pytest.mark.parametrize("name", sorted(available_models()))
def test_every_model_runs_forward_and_backward(name):
    torch.manual_seed(0)
    model = build_model({"model": name, "num_classes": 7})
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "preactresnet18", "densenet121", "mobilenetv2"])
def test_width_multiplier_shrinks_the_model(name):
    assert count_parameters(build_model({"model": name, "width": 0.5})) < count_parameters(build_model({"model": name}))


def test_imagenet_stem_sees_a_quarter_of_the_resolution():
    shapes = []
    model = build_model({"model": "resnet18", "stem": "imagenet"})
    model.layer1.register_forward_hook(lambda m, i, o: shapes.append(o.shape) and None)
    model.eval()(torch.randn(1, 3, 32, 32))
    assert shapes[0][-1] == 8  # layer4 then runs on 1x1 maps: the brief's ResNet-34/DenseNet-121 problem


def test_unknown_model_and_argument_are_one_line_errors():
    with pytest.raises(ModelError, match=r"unknown model 'resnet21'; known: .*resnet20"):
        build_model({"model": "resnet21"})
    with pytest.raises(ModelError, match="has no argument 'depth'"):
        build_model({"model": "resnet20", "depth": 3})
    with pytest.raises(ModelError, match="shortcut must be 'A' or 'B'"):
        build_model({"model": "resnet20", "shortcut": "C"})


def test_spec_is_normalised_with_defaults():
    assert normalize_spec({"model": "resnet20"}) == {"model": "resnet20", "shortcut": "B", "width": 1.0,
                                                      "num_classes": 10}


def test_airnet_fits_resnet20_budget_and_its_stem_can_be_whitened():
    from slimbench.data.augment import normalize
    from slimbench.measure.counts import count_model
    from slimbench.train.whiten import whiten_first_conv

    model, resnet20 = build_model({"model": "airnet"}), build_model({"model": "resnet20"})
    assert count_parameters(model) == 262_658 <= count_parameters(resnet20)
    assert count_model(model).macs == 22_988_416 <= count_model(resnet20).macs
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    conv = whiten_first_conv(model, images)
    assert conv is model.conv1 and conv.kernel_size == (2, 2)
    # the stem's filters are whitening directions: its outputs on the patches are decorrelated (half of them
    # negated copies of the other half)
    out = torch.nn.functional.conv2d(normalize(images, channels_last=False).float(), conv.weight)
    flat = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(flat.T)
    assert torch.allclose(cov, torch.diag(torch.diag(cov)), atol=0.05)


def test_airnet_spec_round_trips_through_json_and_rejects_bad_widths():
    import json

    spec = normalize_spec({"model": "airnet"})
    assert spec["widths"] == [40, 64, 112] and json.loads(json.dumps(spec)) == spec
    with pytest.raises(ModelError, match="widths must be three"):
        build_model({"model": "airnet", "widths": [32, 64]})


def test_airnet_late_pool_spends_macs_not_parameters():
    from slimbench.measure.counts import count_model

    early, late = build_model({"model": "airnet"}), build_model({"model": "airnet", "late_pool": 1})
    assert count_parameters(late) == count_parameters(early)
    # the first group's second convolution (40 -> 40, 3x3) runs at 31x31 instead of 15x15
    assert count_model(late).macs - count_model(early).macs == 40 * 40 * 9 * (31 * 31 - 15 * 15)
    assert count_model(late).macs <= count_model(build_model({"model": "resnet20"})).macs
    late.load_state_dict(early.state_dict())  # same weights, another computation
    x = torch.randn(2, 3, 32, 32)
    assert late.eval()(x).shape == (2, 10) and not torch.allclose(late(x), early.eval()(x))
    with pytest.raises(ModelError, match="late_pool counts leading groups"):
        build_model({"model": "airnet", "late_pool": 4})


def test_airnet_dirac_starts_each_convolution_as_the_identity():
    model = build_model({"model": "airnet", "dirac": True}).eval()
    x = torch.randn(2, 40, 15, 15)
    torch.testing.assert_close(model.layer1.conv2(x), x)  # 40 -> 40: the whole filter bank passes its input
    y = model.layer2.conv1(x)  # 40 -> 64: the first 40 outputs are the inputs, the other 24 stay random
    torch.testing.assert_close(y[:, :40], x)
    assert y[:, 40:].abs().sum() > 0
    plain = build_model({"model": "airnet"})
    assert not torch.allclose(plain.layer1.conv2(x), x)


def test_compiled_airnet_trains_in_bf16_with_finite_gradients():
    """torch.compile's backward of ``amax`` over the map under bf16 autocast gave NaN gradients to every layer
    before the pool (torch 2.13, CPU); the pool is now a max-pool over the whole map."""
    torch.manual_seed(0)
    model = build_model({"model": "airnet", "widths": [16, 16, 32], "stem_channels": 12})
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(torch.compile(model)(x).float(), y)
    loss.backward()
    assert [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()] == []


def test_update_batch_norms_restarts_or_continues_the_statistics_and_restores_the_model():
    from slimbench.models.norms import update_batch_norms

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.5), nn.Dropout(0.9), nn.ReLU()).train()
    conv, norm = model[0], model[1]
    batches = [torch.randn(8, 3, 6, 6) + 3.0 for _ in range(3)]
    with torch.no_grad():
        outputs = torch.cat([conv(b) for b in batches])
    assert update_batch_norms(model, iter(batches)) == 24
    # the plain mean of the batch means: equal batches, so the mean over all images
    torch.testing.assert_close(norm.running_mean, outputs.mean(dim=(0, 2, 3)))
    assert norm.momentum == 0.5 and all(m.training for m in model.modules())
    restarted = norm.running_mean.clone()
    update_batch_norms(model, [batches[0]], restart=False)  # one step of the moving average, momentum 0.5
    with torch.no_grad():
        torch.testing.assert_close(norm.running_mean, 0.5 * restarted + 0.5 * conv(batches[0]).mean(dim=(0, 2, 3)))
    before = norm.running_mean.clone()
    with pytest.raises(ValueError, match="no images"):
        update_batch_norms(model.eval(), [])
    assert torch.equal(norm.running_mean, before) and not model.training


def test_reinitialize_draws_weights_as_the_constructor_does_at_the_sizes_they_have_now():
    from slimbench.models.common import reinitialize

    resnet = build_model({"model": "resnet20"})
    resnet.layer1[0].conv1 = nn.Conv2d(16, 8, 3, 1, 1, bias=False)  # a pruned layer, smaller than built
    with torch.no_grad():
        for p in resnet.parameters():
            p.fill_(0.5)
        resnet.bn1.running_mean.fill_(3.0)
    reinitialize(resnet)
    conv = resnet.layer1[0].conv1.weight
    assert conv.std().item() == pytest.approx((2 / (8 * 9)) ** 0.5, rel=0.15)  # He, fan_out of the pruned size
    assert resnet.fc.weight.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.25)  # He for fc, as built
    assert torch.all(resnet.bn1.weight == 1) and torch.all(resnet.bn1.bias == 0)
    assert torch.all(resnet.bn1.running_mean == 0) and int(resnet.bn1.num_batches_tracked) == 0
    airnet = build_model({"model": "airnet", "dirac": True})
    with torch.no_grad():
        for p in airnet.parameters():
            p.zero_()
    reinitialize(airnet)
    conv = airnet.layer1.conv1
    identity = torch.zeros_like(conv.weight[:conv.in_channels])
    nn.init.dirac_(identity)
    assert torch.equal(conv.weight[:conv.in_channels], identity)  # its identity start kept
