"""state_dict keys and shapes equal upstream's (spec §4 for LHSC; Paranioar/SGRAF model.py for SGRAF)."""
import argparse

import pytest

from lhsc.model import build_model


def default_opt(**kw):
    opt = argparse.Namespace(img_dim=2048, embed_size=1024, no_imgnorm=False, vocab_size=8481,
                             word_dim=300, num_layers=1, drop_out=0.0, bi_gru=True, no_txtnorm=False,
                             sim_dim=256, grad_clip=2., margin=.2, max_violation=True,
                             learning_rate=2e-4, model='LHSC', module_name='SGR', sgr_step=3)
    vars(opt).update(kw)
    return opt


def shapes(sd):
    return [(k, tuple(v.shape)) for k, v in sd.items()]


def test_lhsc_default_state_dict_matches_spec():
    E, S, Di, Wd, q, V = 1024, 256, 2048, 300, 256, 8481
    model = build_model(default_opt())
    img, txt, sim = model.state_dict()
    expected_img = [('fc.weight', (E, Di)), ('fc.bias', (E,))]
    for b in range(1, 5):
        p = 'IM_GCN_%d.' % b
        expected_img += [(p + 'g.weight', (E, E, 1)), (p + 'g.bias', (E,)),
                         (p + 'W.0.weight', (E, E, 1)), (p + 'W.0.bias', (E,)),
                         (p + 'W.1.weight', (E,)), (p + 'W.1.bias', (E,)), (p + 'W.1.running_mean', (E,)),
                         (p + 'W.1.running_var', (E,)), (p + 'W.1.num_batches_tracked', ())]
        for name in ('theta', 'theta1', 'theta2', 'theta3', 'phi', 'phi1', 'phi2', 'phi3'):
            expected_img += [(p + name + '.weight', (q, E, 1)), (p + name + '.bias', (q,))]
        expected_img += [(p + 'fc1.weight', (E, E)), (p + 'fc1.bias', (E,)),
                         (p + 'fc2.weight', (E, E)), (p + 'fc2.bias', (E,))]
    assert shapes(img) == expected_img and len(img) == 118

    expected_txt = [('embed.weight', (V, Wd))]
    for a in range(1, 5):
        for part in ('embedding_local', 'embedding_global', 'embedding_v'):
            expected_txt += [('W_att%d.%s.0.weight' % (a, part), (Wd, Wd)), ('W_att%d.%s.0.bias' % (a, part), (Wd,))]
    for suffix in ('', '_reverse'):
        expected_txt += [('cap_rnn.weight_ih_l0' + suffix, (3 * E, Wd)), ('cap_rnn.weight_hh_l0' + suffix, (3 * E, E)),
                         ('cap_rnn.bias_ih_l0' + suffix, (3 * E,)), ('cap_rnn.bias_hh_l0' + suffix, (3 * E,))]
    assert shapes(txt) == expected_txt and len(txt) == 33

    bn = lambda p, n: [(p + '.weight', (n,)), (p + '.bias', (n,)), (p + '.running_mean', (n,)),
                       (p + '.running_var', (n,)), (p + '.num_batches_tracked', ())]
    lin = lambda p, o, i: [(p + '.weight', (o, i)), (p + '.bias', (o,))]
    expected_sim = (lin('v_global_w.embedding_local.0', E, E) + bn('v_global_w.embedding_local.1', 36)
                    + lin('v_global_w.embedding_global.0', E, E) + bn('v_global_w.embedding_global.1', E)
                    + lin('v_global_w.embedding_common.0', 1, E)
                    + lin('t_global_w.embedding_local.0', E, E) + lin('t_global_w.embedding_global.0', E, E)
                    + lin('t_global_w.embedding_common.0', 1, E)
                    + lin('sim_tranloc_w', S, E) + lin('sim_tranglo_w', S, E) + lin('sim_eval_w', 1, S)
                    + lin('cal_sim_base_atten.attn_sim_w', 1, S) + bn('cal_sim_base_atten.bn', 1))
    assert shapes(sim) == expected_sim and len(sim) == 35
    assert sum(p.numel() for p in model.params) == 43799498  # spec §4


def test_bi_gru_off_and_two_layers_change_gru_keys():
    txt = build_model(default_opt(bi_gru=False, num_layers=2, embed_size=16, word_dim=8, sim_dim=8,
                                  img_dim=20, vocab_size=10)).state_dict()[1]
    gru = [k for k in txt if k.startswith('cap_rnn')]
    assert gru == ['cap_rnn.%s_l%d' % (n, l) for l in (0, 1) for n in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')]


@pytest.mark.parametrize('head', ['SAF', 'SGR'])
def test_sgraf_state_dict_matches_paranioar(head):
    E, S = 32, 8
    img, txt, sim = build_model(default_opt(model='SGRAF', module_name=head, embed_size=E, sim_dim=S,
                                            word_dim=12, img_dim=20, vocab_size=10)).state_dict()
    assert list(img) == ['fc.weight', 'fc.bias']
    assert list(txt) == ['embed.weight'] + ['cap_rnn.%s_l0%s' % (n, s) for s in ('', '_reverse')
                                            for n in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')]
    common_keys = [k for k in sim if not k.startswith(('SAF_module', 'SGR_module'))]
    assert common_keys[-6:] == ['sim_tranloc_w.weight', 'sim_tranloc_w.bias', 'sim_tranglo_w.weight',
                                'sim_tranglo_w.bias', 'sim_eval_w.weight', 'sim_eval_w.bias']
    head_keys = shapes({k: v for k, v in sim.items() if k.startswith(head)})
    if head == 'SAF':
        assert head_keys == [('SAF_module.attn_sim_w.weight', (1, S)), ('SAF_module.attn_sim_w.bias', (1,)),
                             ('SAF_module.bn.weight', (1,)), ('SAF_module.bn.bias', (1,)),
                             ('SAF_module.bn.running_mean', (1,)), ('SAF_module.bn.running_var', (1,)),
                             ('SAF_module.bn.num_batches_tracked', ())]
    else:
        expected = []
        for k in range(3):
            for name in ('graph_query_w', 'graph_key_w', 'sim_graph_w'):
                expected += [('SGR_module.%d.%s.weight' % (k, name), (S, S)), ('SGR_module.%d.%s.bias' % (k, name), (S,))]
        assert head_keys == expected
