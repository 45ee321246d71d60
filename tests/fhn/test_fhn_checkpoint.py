"""state_dict layout vs spec section 4, legacy (PyTorch 1.2, non-zip, CUDA storage) checkpoints,
backbones without downloads."""
import os

import numpy as np
import pytest
import torch

from fhn.backbones import WeightsError, build_backbone
from fhn.model import FashionNet, FashionNetDeploy
from fhn.param import FashionParam, NetParam


def _meta_net(**kw):
    with torch.device("meta"):
        return FashionNet(NetParam(**kw), pretrained=False)


def test_state_dict_fhn_vse_t3_630():
    net = _meta_net(num_users=630, dim=128, hash_types=3, use_semantic=True, use_visual=True)
    sd = net.state_dict()
    assert sum(v.numel() for v in sd.values()) == 90812231
    assert all(v.dtype == torch.float32 for v in sd.values())
    keys = list(sd)
    assert keys[:2] == ["user_embedding.scale", "user_embedding.encoder.weight"]
    assert sd["user_embedding.encoder.weight"].shape == (128, 630)
    assert sd["features.classifier.1.weight"].shape == (4096, 256, 6, 6)
    assert sd["features.classifier.4.weight"].shape == (4096, 4096, 1, 1)
    for c in range(3):
        assert sd["encoder_v.%d.encoder.1.weight" % c].shape == (2048, 4096)
        assert sd["encoder_v.%d.encoder.4.weight" % c].shape == (128, 2048)
        assert sd["encoder_t.%d.encoder.0.weight" % c].shape == (1024, 2400)
        assert sd["encoder_t.%d.encoder.3.weight" % c].shape == (128, 1024)
    assert keys[-2:] == ["core.0.weight", "core.1.weight"] and sd["core.1.weight"].shape == (1, 128)
    feature_keys = [k for k in keys if k.startswith("features.")]
    assert feature_keys == ["features.features.%d.%s" % (i, w) for i in (0, 3, 6, 8, 10)
                            for w in ("weight", "bias")] + \
        ["features.classifier.%d.%s" % (i, w) for i in (1, 4) for w in ("weight", "bias")]
    # optimizer groups = children in registration order
    assert list(net._modules) == ["user_embedding", "features", "encoder_v", "encoder_t", "core"]


def test_state_dict_fhn_t3_53_and_630():
    sd = _meta_net(num_users=53, dim=16, hash_types=3, use_visual=True).state_dict()
    assert not any(k.startswith("encoder_t") for k in sd)
    assert sd["user_embedding.encoder.weight"].shape == (16, 53)
    assert sd["encoder_v.2.encoder.4.weight"].shape == (16, 2048)
    sd630 = _meta_net(num_users=630, dim=128, hash_types=3, use_visual=True).state_dict()
    assert sum(v.numel() for v in sd630.values()) == 83043140


def test_resnet18_keys_groupnorm():
    sd = _meta_net(num_users=5, dim=8, hash_types=3, use_visual=True, backbone="resnet18").state_dict()
    assert sd["features.conv1.weight"].shape == (64, 3, 7, 7)
    assert "features.layer2.0.downsample.1.weight" in sd and "features.fc.weight" in sd
    assert not any("running_mean" in k for k in sd)
    assert sd["encoder_v.0.encoder.1.weight"].shape == (256, 512)


def _legacy_cuda_save(obj, path):
    """Write like PyTorch 1.2 from a GPU: legacy (non-zip) format, storages tagged cuda:0."""
    import torch.serialization as S

    orig = S.location_tag
    S.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    finally:
        S.location_tag = orig


def _small_cfg(path):
    net = dict(name="FashionNetDeploy", num_users=3, dim=8, hash_types=3, use_semantic=True,
               use_visual=False)
    return FashionParam(net_param=net, load_trained=str(path), gpus=[0])


def test_legacy_cuda_checkpoint_loads_on_cpu(tmp_path):
    from fhn.model import get_net, resolve_device

    torch.manual_seed(0)
    src = FashionNetDeploy(NetParam(name="FashionNetDeploy", num_users=3, dim=8, hash_types=3,
                                    use_semantic=True, use_visual=False)).eval()
    src.init_weights()
    src.set_scale(3.0)
    path = tmp_path / "fashion_hash_net_t3_best.net"
    _legacy_cuda_save(src.state_dict(), str(path))
    raw = path.read_bytes()
    assert not raw.startswith(b"PK") and b"cuda:0" in raw
    cfg = _small_cfg(path)
    if torch.cuda.is_available():
        device = resolve_device(cfg.gpus)  # cuda:0
    else:
        with pytest.warns(RuntimeWarning, match="CUDA is not available"):
            device = resolve_device(cfg.gpus)
        assert device.type == "cpu"
    net = get_net(cfg, device).eval()
    for k, v in src.state_dict().items():
        assert torch.equal(net.state_dict()[k].cpu(), v), k
    x = [torch.randn(2, 2400) for _ in range(3)]
    u = torch.tensor([0, 2])
    with torch.no_grad():
        got = net([t.to(device) for t in x], u.to(device))
        for a, b in zip(src(x, u), got):
            torch.testing.assert_close(a, b.cpu(), rtol=1e-5, atol=1e-6)
    assert net.user_embedding.scale.item() == 3.0


def test_corrupt_checkpoint_is_clear_error(tmp_path):
    from common.checkpoint import CheckpointError
    from fhn.model import get_net

    bad = tmp_path / "bad.net"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.net"):
        get_net(_small_cfg(bad))


def test_backbones_never_download(tmp_path, monkeypatch):
    """pretrained backbone weights come from a local file; missing -> WeightsError naming it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match="alexnet-owt-7be5be79.pth"):
        build_backbone("alexnet", pretrained=True)
    with pytest.raises(WeightsError, match=os.path.join("weights", "resnet50.tar")):
        build_backbone("resnet50", pretrained=True)
    # torchvision-layout AlexNet weights from a local path: FC weights reshaped to convs
    import torchvision

    tv = torchvision.models.alexnet(weights=None)
    wpath = tmp_path / "alex.pth"
    torch.save(tv.state_dict(), str(wpath))
    net = build_backbone("alexnet", pretrained=True, weights=str(wpath))
    assert torch.equal(net.classifier[1].weight.view(4096, -1), tv.classifier[1].weight)
    assert torch.equal(net.features[0].weight, tv.features[0].weight)
    # a checkpointed net needs no backbone weights at all (quirk 4 fixed)
    with torch.device("meta"):
        FashionNet(NetParam(backbone="resnet152", use_visual=True, num_users=3, dim=8),
                   pretrained=False)


def test_resnet_weights_from_local_tar(tmp_path):
    src = build_backbone("resnet18")
    path = tmp_path / "resnet18.tar"
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, str(path))
    net = build_backbone("resnet18", pretrained=True, weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), src.state_dict().values()))
    out = net(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 512) and np.isfinite(out.detach().numpy()).all()
