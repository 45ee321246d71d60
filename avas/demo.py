"""End-to-end demo on real data (make demo): the 30 real Taobao photos of AVAS, real POI names
of the 500-POI recall set, real titles / POI names / CTR order of the ranking val CSV.

    python avas/demo.py --out_dir /tmp/avas_demo

1. makes a tiny recall set (6 POIs x 5 photos named <poi_id>_<rank>.jpg) and a small BERT config
   (hidden 32, real 21128-token vocab, random init: no weights can be downloaded here);
2. train_align.py for a few CPU steps (CLIP + MKG loss), then BN re-estimation;
3. align_recall_test_with_mmkg_model.py + align_recall@K.py -> recall@5;
4. POI side tables from that ALIGN, ranking pairs from val-CSV lines whose images are the photos;
   train_ranking.py for one epoch, then local_eval_test.py -> pairwise accuracy and ROC-AUC;
5. the AVAS page: avas_page/align_model_test_with_mkg.py + avas_page/visualization_csv.py -> HTML;
6. predict.py: the first POI name against the 30 recall photos -> a retrieval gallery (HTML + PNG)
   whose ground truth (that POI's 5 photos) is marked, names from the recall CSV.
Writes <out_dir>/summary.json (the recall@5 row links the gallery)."""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import glob
import importlib.util
import json
import math
import shutil
import time

from avas.formats import RECORD_SEP, read_ranking_lines, read_recall_csv, unique_pois
from common.atomic import atomic_open
from common.demo import run_step
from common.errors import cli_main

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, 'data')
PHOTOS = os.path.join(DATA, 'images_test')
N_POIS, PER_POI = 6, 5
N_TRAIN_PAIRS, N_VAL_PAIRS = 8, 12
SMALL_BERT = {'hidden_size': 32, 'intermediate_size': 64, 'num_attention_heads': 2}


def make_small_bert(out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(DATA, 'bert', 'config.json'), encoding='utf-8') as f:
        config = json.load(f)
    config.update(SMALL_BERT)
    with open(os.path.join(out, 'config.json'), 'w', encoding='utf-8') as f:
        json.dump(config, f, indent=2)
    shutil.copy(os.path.join(DATA, 'bert', 'vocab.txt'), out)
    return out


def make_recall_set(out_dir):
    """6 real POIs (first ones of the 500-POI CSV) x 5 of the 30 photos each."""
    pois = unique_pois(read_recall_csv(os.path.join(DATA, 'temp_recall_biztype0_fc5_imagern_500.csv')))[:N_POIS]
    photos = sorted(glob.glob(os.path.join(PHOTOS, '*.jpg')))
    image_dir = os.path.join(out_dir, 'recall_images')
    os.makedirs(image_dir, exist_ok=True)
    rows, poi_images = [], {}
    for i, (poi_id, name) in enumerate(pois):
        for rank in range(1, PER_POI + 1):
            photo = photos[i * PER_POI + rank - 1]
            dst = os.path.join(image_dir, '%s_%d.jpg' % (poi_id, rank))
            shutil.copy(photo, dst)
            poi_images.setdefault(name, []).append(dst)
            rows.append('%s,%s,http://127.0.0.1/%s,%d,0,0,0' % (poi_id, name, os.path.basename(photo), rank))
    csv_path = os.path.join(out_dir, 'recall.csv')
    with open(csv_path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(rows) + '\n')
    return csv_path, image_dir, poi_images


def make_ranking_set(out_dir):
    """Real val-CSV lines (title, POI names, ctr order) with oss_url/oss_url2 pointing at photos."""
    photos = sorted(glob.glob(os.path.join(PHOTOS, '*.jpg')))
    image_root = os.path.join(out_dir, 'oss_images')
    os.makedirs(image_root, exist_ok=True)
    for p in photos:
        shutil.copy(p, image_root)
    lines = read_ranking_lines(os.path.join(DATA, 'dwd_mml_train_dataset_1007_urls_val_with_poi_tuomin.csv'))
    out, k = [], 0
    for _, line in lines[:N_TRAIN_PAIRS + N_VAL_PAIRS]:
        fields = line.split(RECORD_SEP)
        a, b = photos[k % len(photos)], photos[(k + 7) % len(photos)]
        fields[7] = 'https://poi-image.example/demo/' + os.path.basename(a)
        fields[8] = 'https://poi-image.example/demo/' + os.path.basename(b)
        out.append(RECORD_SEP.join(fields))
        k += 1
    paths = []
    for name, part in (('rank_train.csv', out[:N_TRAIN_PAIRS]), ('rank_val.csv', out[N_TRAIN_PAIRS:])):
        paths.append(os.path.join(out_dir, name))
        with open(paths[-1], 'w', encoding='utf-8') as f:
            f.write('\n'.join(part) + '\n')
    poi_names = sorted({n for l in out for n in l.split(RECORD_SEP)[9].split(',') if n.strip()})
    return paths, image_root, poi_names


def run(cmd, cwd, log):
    """Run a real entry script; its output goes to a log file, its command line to the console."""
    open(log, 'w').close()  # one log per step, fresh on every demo run
    step = run_step(cmd, cwd, log=log)
    print('  done in %.1fs (log: %s)' % (step.wall_s, log), flush=True)
    return step.command, step.wall_s


def random_recall_baseline(n_images, n_pos, k):
    """Expected recall@k when scores are random: 1 - C(n-pos, k) / C(n, k)."""
    return 1.0 - math.comb(n_images - n_pos, k) / math.comb(n_images, k)


def step_align(py, out, bert, recall_csv, image_dir, args):
    print('[2/6] train ALIGN (CLIP + MKG) for %d steps' % args.align_steps, flush=True)
    align_dir = os.path.join(out, 'align')
    run([py, os.path.join(HERE, 'train_align.py'), '--train_csv', recall_csv, '--image_dir', image_dir,
         '--bert_path', bert, '--batch_size', str(args.align_batch), '--epochs', '1', '--max_steps', str(args.align_steps),
         '--lr', '1e-3', '--recalibrate_bn', '3', '--log_every', '1', '--save_dir', align_dir, '--seed', '0',
         '--device', 'cpu'], out, os.path.join(out, 'train_align.log'))
    return os.path.join(align_dir, 'align_model.pth')


def step_recall(py, out, bert, recall_csv, image_dir, align_ckpt):
    print('[3/6] recall: score every (POI, image) pair, then recall@5', flush=True)
    result_csv = os.path.join(out, 'align_recall@k_demo.csv')
    run([py, os.path.join(HERE, 'align_recall_test_with_mmkg_model.py'), '--model_path', align_ckpt,
         '--bert_path', bert, '--image_dir', image_dir, '--in_csv', recall_csv, '--out_csv', result_csv,
         '--batch_size', '16', '--device', 'cpu'], out, os.path.join(out, 'recall_infer.log'))
    cmd, wall = run([py, os.path.join(HERE, 'align_recall@K.py'), '--file', result_csv, '--k', '5',
                     '--out_json', os.path.join(out, 'recall.json')], out, os.path.join(out, 'recall_at_k.log'))
    with open(os.path.join(out, 'recall.json'), encoding='utf-8') as f:
        recall5 = json.load(f)['recall@5']
    return {'paper': 'avas', 'command': cmd, 'metric': 'recall@5', 'value': recall5,
            'baseline': random_recall_baseline(N_POIS * PER_POI, PER_POI, 5), 'wall_s': wall}


def step_ranking(py, out, bert, align_ckpt, poi_images):
    print('[4/6] ranking: POI tables from the ALIGN, train 1 epoch, evaluate', flush=True)
    (train_csv, val_csv), image_root, poi_names = make_ranking_set(out)
    build_demo_poi_tables(align_ckpt, bert, poi_names, poi_images, out)
    common = ['--image_root', image_root, '--poi_tables', out, '--align_ckpt', align_ckpt, '--bert_path', bert,
              '--batch_size', '8', '--device', 'cpu']
    rank_dir = os.path.join(out, 'ranking')
    run([py, os.path.join(HERE, 'train_ranking.py'), '--index_files', '%s,%s,unused' % (train_csv, val_csv),
         '--epoch', '1', '--lr', '1e-3', '--save_dir', rank_dir, '--seed', '0'] + common, out,
        os.path.join(out, 'train_ranking.log'))
    ranking_ckpt = sorted(glob.glob(os.path.join(rank_dir, 'shoucai_siamese_train_concat_poi_*.ckpt')))[-1]
    cmd, wall = run([py, os.path.join(HERE, 'local_eval_test.py'), '--index_files', 'unused,%s,unused' % val_csv,
                     '--ranking_ckpt', ranking_ckpt, '--out_json', os.path.join(out, 'ranking.json')] + common,
                    out, os.path.join(out, 'local_eval_test.log'))
    with open(os.path.join(out, 'ranking.json'), encoding='utf-8') as f:
        ranking = json.load(f)
    return [{'paper': 'avas', 'command': cmd, 'metric': 'pairwise_accuracy', 'value': ranking['dev_accuracy'],
             'baseline': 0.5, 'wall_s': wall},
            {'paper': 'avas', 'command': cmd, 'metric': 'roc_auc', 'value': ranking['roc_auc'],
             'baseline': 0.5, 'wall_s': wall}]


def step_page(py, out, bert, align_ckpt):
    print('[5/6] AVAS page: score the 30 photos against "普陀山", write the HTML gallery', flush=True)
    scores_csv = os.path.join(out, 'align_普陀山图片_with_MKG.csv')
    run([py, os.path.join(HERE, 'avas_page', 'align_model_test_with_mkg.py'), '--model_path', align_ckpt,
         '--bert_path', bert, '--image_dir', PHOTOS, '--out_csv', scores_csv, '--device', 'cpu'], out,
        os.path.join(out, 'avas_scores.log'))
    html = os.path.join(out, 'html_align_with_mkg', 'align_普陀山图片_with_MKG.html')
    run([py, os.path.join(HERE, 'avas_page', 'visualization_csv.py'), '--csv_file', scores_csv, '--out_html', html],
        out, os.path.join(out, 'avas_page.log'))
    return html


def step_gallery(py, out, bert, align_ckpt, recall_csv, image_dir):
    """predict.py: the first POI name -> the recall photos, its own 5 marked as ground truth."""
    query = unique_pois(read_recall_csv(recall_csv))[0][1]
    print('[6/6] retrieval gallery: "%s" -> top 10 of the %d recall photos' % (query, N_POIS * PER_POI), flush=True)
    gallery = os.path.join(out, 'gallery')
    has_gallery = importlib.util.find_spec('common.gallery') is not None  # the shared gallery writer
    run([py, os.path.join(HERE, 'predict.py'), '--checkpoint', align_ckpt, '--bert_path', bert, '--query', query,
         '--image_dir', image_dir, '--mapping', recall_csv, '--top_k', '10', '--export',
         os.path.join(gallery, 'predict.npz'), '--device', 'cpu'] + (['--gallery', gallery] if has_gallery else []),
        out, os.path.join(out, 'predict.log'))
    if not has_gallery:
        print('  (common.gallery is not installed: no gallery pages, the ranked names are in predict.log)')
        return None
    return {'gallery': 'gallery/gallery.html', 'gallery_png': 'gallery/gallery.png'}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out_dir', required=True)
    p.add_argument('--align_steps', default=2, type=int)
    p.add_argument('--align_batch', default=6, type=int)
    args = p.parse_args(argv)
    out = os.path.abspath(args.out_dir)
    os.makedirs(out, exist_ok=True)
    py = sys.executable
    t0 = time.time()
    print('[1/6] data: %d POIs x %d real photos, small BERT config with the real vocab' % (N_POIS, PER_POI), flush=True)
    bert = make_small_bert(os.path.join(out, 'bert_small'))
    recall_csv, image_dir, poi_images = make_recall_set(out)
    align_ckpt = step_align(py, out, bert, recall_csv, image_dir, args)
    recall_row = step_recall(py, out, bert, recall_csv, image_dir, align_ckpt)
    ranking_rows = step_ranking(py, out, bert, align_ckpt, poi_images)
    html = step_page(py, out, bert, align_ckpt)
    links = step_gallery(py, out, bert, align_ckpt, recall_csv, image_dir)
    if links:
        recall_row['links'] = links
    summary = [recall_row] + ranking_rows
    with atomic_open(os.path.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    for row in summary:
        print('%-18s %.4f (random baseline %.4f)' % (row['metric'], row['value'], row['baseline']))
    print('page: %s\ngallery: %s\nsummary: %s\ntotal %.1fs' % (html, os.path.join(out, 'gallery', 'gallery.html'),
                                                             os.path.join(out, 'summary.json'), time.time() - t0))
    return summary


def build_demo_poi_tables(align_ckpt, bert, poi_names, poi_images, out):
    """Side tables for the demo: real priority table; vectors for the pairs' POI names, each POI
    given 3 of the photos (the photos carry no POI labels; this only exercises the pipeline)."""
    import torch  # torch only here: the demo's other steps run the scripts as subprocesses
    from avas.align_model import build_model
    from avas.poi_tables import PIC_NUM_TABLE, build_poi_vector_tables
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    shutil.copy(os.path.join(DATA, PIC_NUM_TABLE), out)
    photos = sorted(glob.glob(os.path.join(PHOTOS, '*.jpg')))
    images = {name: [photos[(3 * i + j) % len(photos)] for j in range(3)] for i, name in enumerate(poi_names)}
    model = build_model(align_ckpt, bert)
    build_poi_vector_tables(model, images, out, torch.device('cpu'))


if __name__ == '__main__':
    cli_main(main)
