"""Checkpoints in upstream's layouts load with the same outputs (spec §3 "Checkpoints", §4):
align_model.pth = {'epoch', 'min_loss', 'state_dict'} with MKG keys and transformers-4.8's
position_ids; the ranking ckpt = a bare 670-key state_dict whose align_model.* override the pth."""
import pytest
import torch

from avas.align_model import (ALIGN, POSITION_IDS_KEY, CheckpointLayoutError, build_model)
from avas.model_local import Multimodal_Model, load_ranking_state_dict, read_ranking_checkpoint
from avas.tokenization import tokenize
from common.checkpoint import CheckpointError
from tests.avas.avas_testlib import fill_deterministic, make_small_bert


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('ckpt')
    bert = make_small_bert(str(root / 'bert'))
    src = fill_deterministic(ALIGN(bert_path=bert, with_mkg=True), seed=3).eval()
    sd = dict(src.state_dict())
    sd[POSITION_IDS_KEY] = torch.arange(512).unsqueeze(0)  # as transformers 4.8.1 saved it
    torch.save({'epoch': 7, 'min_loss': 0.4215, 'state_dict': sd}, str(root / 'align_model.pth'))
    return root, bert, src, sd


def _text(model):
    return model.encode_text(tokenize(model.tokenizer, ['普陀山', '上海开元阿缇客酒店']))


@torch.no_grad()
def test_align_pth_with_mkg_and_position_ids_loads_same_outputs(env):
    root, bert, src, sd = env
    model = build_model(str(root / 'align_model.pth'), bert).eval()  # recall model: no MKG head
    assert not hasattr(model, 'relations_emb')
    assert torch.equal(model.text_hidden_layer.weight, src.text_hidden_layer.weight)
    torch.testing.assert_close(_text(model), _text(src), rtol=0, atol=1e-6)
    img = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(model.encode_image(img), src.encode_image(img), rtol=0, atol=1e-6)
    mkg = build_model(str(root / 'align_model.pth'), bert, with_mkg=True)
    assert torch.equal(mkg.relations_emb.weight, src.relations_emb.weight)


def test_missing_encoder_key_and_bad_shape_are_errors(env, tmp_path):
    root, bert, src, sd = env
    broken = {k: v for k, v in sd.items() if k != 'text_model.encoder.layer.2.output.dense.weight'}
    torch.save({'state_dict': broken}, str(tmp_path / 'missing.pth'))
    with pytest.raises(CheckpointLayoutError, match='layer.2.output.dense.weight'):
        build_model(str(tmp_path / 'missing.pth'), bert)
    wrong = dict(sd)
    wrong['image_hidden_layer.weight'] = torch.zeros(512, 256)
    torch.save({'state_dict': wrong}, str(tmp_path / 'shape.pth'))
    with pytest.raises(CheckpointLayoutError, match='image_hidden_layer.weight has shape'):
        build_model(str(tmp_path / 'shape.pth'), bert)
    (tmp_path / 'trunc.pth').write_bytes((root / 'align_model.pth').read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        build_model(str(tmp_path / 'trunc.pth'), bert)
    with pytest.raises(FileNotFoundError, match='release v0.1'):
        build_model(str(tmp_path / 'absent.pth'), bert)


@torch.no_grad()
def test_bare_ranking_state_dict_round_trip_overrides_align(env, tmp_path):
    root, bert, src, sd = env
    trained = fill_deterministic(Multimodal_Model(build_model(str(root / 'align_model.pth'), bert)), seed=5).eval()
    rsd = dict(trained.state_dict())
    rsd['align_model.' + POSITION_IDS_KEY] = torch.arange(512).unsqueeze(0)
    assert len(rsd) == 670
    torch.save(rsd, str(tmp_path / 'rank.ckpt'))  # bare OrderedDict, like the release
    fresh = Multimodal_Model(build_model(str(root / 'align_model.pth'), bert))
    assert not torch.equal(fresh.align_model.text_hidden_layer.weight, trained.align_model.text_hidden_layer.weight)
    load_ranking_state_dict(fresh, read_ranking_checkpoint(str(tmp_path / 'rank.ckpt')))
    fresh.eval()
    assert torch.equal(fresh.align_model.text_hidden_layer.weight, trained.align_model.text_hidden_layer.weight)
    img, feat = torch.randn(2, 3, 224, 224), torch.randn(2, 512)
    m, t, n = torch.randn(2, 5, 512), torch.randn(2, 5, 512), torch.tensor([[3.0], [5.0]])
    torch.testing.assert_close(fresh(img, feat, m, t, n), trained(img, feat, m, t, n), rtol=0, atol=1e-6)
    extra = dict(rsd)
    extra['linear9.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointLayoutError, match='1 unexpected'):
        load_ranking_state_dict(fresh, extra)
